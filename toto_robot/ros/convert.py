"""``sensor_msgs/Image`` <-> uint8 RGB arrays, ``std_msgs/Float32MultiArray`` <-> float32 vectors.

No cv_bridge: the encodings robots' cameras publish are handled with numpy (``rgb8``, ``bgr8``,
``rgba8``, ``bgra8``, ``mono8``), honouring the row ``step`` (padded rows) and ``is_bigendian``
(irrelevant for 8-bit data). Anything else is refused with an error that names the encoding.

``min_side`` (both readers): downscale on the way in, so the cost of what follows does not grow with
the camera's resolution. The frame is cut to its centre square (what every encoder does first) and
box-averaged by the largest integer factor that keeps the side >= ``min_side`` (Pillow's C
``reduce``); JPEGs are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT (Pillow's ``draft``).
The encoder's own antialiased resize then only bridges the last factor below 2.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage, UnidentifiedImageError

from toto_robot.errors import UserError

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC3": 3, "8UC1": 1}


class ImageEncodingError(UserError, ValueError):
    """A ``sensor_msgs/Image`` this project cannot read: unknown encoding or inconsistent size fields."""


def centre_square_reduce(img: np.ndarray, min_side: int) -> np.ndarray:
    """uint8 [H, W, C] -> its centre square, box-averaged by the largest integer factor keeping the side >= min_side."""
    if min_side <= 0:
        return img
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = img[top:top + s, left:left + s]
    k = s // min_side
    if k < 2:
        return sq
    sq = np.ascontiguousarray(sq)
    if sq.shape[2] == 1:
        return np.asarray(PILImage.fromarray(sq[..., 0]).reduce(k))[..., None]
    return np.asarray(PILImage.fromarray(sq).reduce(k))


def image_msg_to_array(msg, min_side: int = 0) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB (a copy; safe to keep after the callback). With
    ``min_side`` > 0, the centre square downscaled on the way in (see the module's doc)."""
    enc = msg.encoding
    if enc not in CHANNELS:
        raise ImageEncodingError(f"unsupported image encoding {enc!r}; supported: {', '.join(CHANNELS)} "
                                 f"(16-bit depth and Bayer images are not camera RGB)")
    c, h, w, step = CHANNELS[enc], int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageEncodingError(f"empty image {w}x{h}")
    if step < w * c:
        raise ImageEncodingError(f"image step {step} is smaller than width*channels = {w * c} for {enc}")
    data = np.frombuffer(msg.data, dtype=np.uint8)  # no copy: rclpy hands uint8[] over as array.array / bytes
    if data.size < step * h:
        raise ImageEncodingError(f"image data has {data.size} bytes, expected step*height = {step * h} ({w}x{h} {enc})")
    img = data[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 4:
        img = img[..., :3]
    img = centre_square_reduce(img, min_side)
    if enc in ("bgr8", "bgra8"):
        img = img[..., ::-1]
    elif c == 1:
        img = np.repeat(img, 3, axis=2)
    img = np.ascontiguousarray(img)
    return img.copy() if np.shares_memory(img, data) else img


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


def compressed_msg_to_array(msg, min_side: int = 0) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 [H, W, 3] RGB. With ``min_side`` > 0 a JPEG is
    decoded at the smallest DCT scale whose short side is still >= ``min_side``, then reduced as raw frames are."""
    try:
        img = PILImage.open(io.BytesIO(msg.data))
        if min_side > 0 and img.format == "JPEG":
            w, h = img.size
            s = min(w, h)
            img.draft("RGB", (-(-w * min_side // s), -(-h * min_side // s)))  # keeps both sides >= the request
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageEncodingError(f"cannot decode compressed image (format {msg.format!r}): {e}") from e
    if img.width == 0 or img.height == 0:
        raise ImageEncodingError(f"empty compressed image {img.width}x{img.height}")
    return np.ascontiguousarray(centre_square_reduce(np.asarray(img.convert("RGB"), dtype=np.uint8), min_side))


def array_to_compressed_msg(img: np.ndarray, fmt: str = "jpeg", quality: int = 90, stamp=None, frame_id: str = "camera"):
    """uint8 [H, W, 3] RGB -> sensor_msgs/CompressedImage (``jpeg`` or ``png``), as image_transport's compressed plugin sends."""
    from sensor_msgs.msg import CompressedImage

    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageEncodingError(f"expected uint8 [H, W, 3] RGB, got {img.dtype} {img.shape}")
    if fmt not in ("jpeg", "png"):
        raise ImageEncodingError(f"can only compress to jpeg or png, not {fmt!r}")
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format=fmt.upper(), **({"quality": quality} if fmt == "jpeg" else {}))
    msg = CompressedImage(format=fmt, data=buf.getvalue())
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    return msg
