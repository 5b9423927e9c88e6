"""``sensor_msgs/Image`` <-> uint8 RGB arrays, ``std_msgs/Float32MultiArray`` <-> float32 vectors.

No cv_bridge: the encodings robots' cameras publish are handled with numpy (``rgb8``, ``bgr8``,
``rgba8``, ``bgra8``, ``mono8``), honouring the row ``step`` (padded rows) and ``is_bigendian``
(irrelevant for 8-bit data). Anything else is refused with an error that names the encoding.
"""
from __future__ import annotations

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC3": 3, "8UC1": 1}


class ImageEncodingError(ValueError):
    """A ``sensor_msgs/Image`` this project cannot read: unknown encoding or inconsistent size fields."""


def image_msg_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB (a copy; safe to keep after the callback)."""
    enc = msg.encoding
    if enc not in CHANNELS:
        raise ImageEncodingError(f"unsupported image encoding {enc!r}; supported: {', '.join(CHANNELS)} "
                                 f"(16-bit depth and Bayer images are not camera RGB)")
    c, h, w, step = CHANNELS[enc], int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageEncodingError(f"empty image {w}x{h}")
    if step < w * c:
        raise ImageEncodingError(f"image step {step} is smaller than width*channels = {w * c} for {enc}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size < step * h:
        raise ImageEncodingError(f"image data has {data.size} bytes, expected step*height = {step * h} ({w}x{h} {enc})")
    img = data[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc in ("bgr8", "bgra8"):
        img = img[..., [2, 1, 0]]
    elif c == 4:
        img = img[..., :3]
    elif c == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def array_to_image_msg(img: np.ndarray, encoding: str = "rgb8", stamp=None, frame_id: str = "camera"):
    """uint8 [H, W, 3] RGB -> sensor_msgs/Image (``rgb8`` or ``bgr8``)."""
    from sensor_msgs.msg import Image

    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageEncodingError(f"expected uint8 [H, W, 3] RGB, got {img.dtype} {img.shape}")
    if encoding not in ("rgb8", "bgr8"):
        raise ImageEncodingError(f"can only publish rgb8 or bgr8, not {encoding!r}")
    if encoding == "bgr8":
        img = img[..., ::-1]
    msg = Image()
    msg.height, msg.width = img.shape[:2]
    msg.encoding, msg.is_bigendian, msg.step = encoding, 0, img.shape[1] * 3
    msg.data = np.ascontiguousarray(img).tobytes()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def array_to_multiarray(x):
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension

    x = np.asarray(x, dtype=np.float32).reshape(-1)
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="x", size=int(x.size), stride=int(x.size))]
    msg.data = x.tolist()
    return msg


def multiarray_to_array(msg) -> np.ndarray:
    return np.asarray(msg.data, dtype=np.float32)


def compressed_msg_to_array(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 [H, W, 3] RGB."""
    import io

    from PIL import Image as PILImage, UnidentifiedImageError

    try:
        img = PILImage.open(io.BytesIO(bytes(msg.data)))
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ImageEncodingError(f"cannot decode compressed image (format {msg.format!r}): {e}") from e
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
