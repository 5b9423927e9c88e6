"""``toto_encoder_node``: camera frames in, frozen-encoder features out.

    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_dir:=runs/bc/<run>/policy/encoder
    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_name:=toto -p checkpoint:=runs/pretrain/<run>/final

Subscribes ``image_topic`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; or, with
``compressed:=true``, sensor_msgs/CompressedImage jpeg/png) with a keep-last ``qos_depth`` queue and
``qos_reliability`` (best_effort matches every publisher). Frames are cut to their centre square and
box-downscaled on the way in (``prescale``: JPEGs decoded at reduced DCT scale), so the cost does not
grow with the camera's resolution. Inference runs on a worker thread on the newest frame; older
frames are skipped and counted as stale.

Publishes the pooled feature vector on ``features_topic`` (std_msgs/Float32MultiArray) and, on
``<features_topic>/header``, the std_msgs/Header of the frame it came from (stamp preserved), and
rate, latency, frames lost / stale / unreadable and errors on ``/diagnostics``
(diagnostic_msgs/DiagnosticArray) every ``diagnostics_period_s``. A frame that cannot be read is
counted and dropped; any other error is logged with its traceback and counted, and the node goes on.

A saved encoder (``encoder_dir``) keeps its layer and pooling: ``layer``/``pooling`` that differ
from it are applied only where no trained weights depend on them (a different layer under average
pooling) and refused at start otherwise.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32MultiArray, Header

from toto_robot.encoders import build_encoder, load_encoder
from toto_robot.encoders.base import FrameFormatError
from toto_robot.ros.control import stamp_ns
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, compressed_msg_to_array, image_msg_to_array
from toto_robot.ros_nodes.common import ConfigError, Diagnostics, LatestWorker, StreamStats, apply_precision, camera_qos, declare, spin
from toto_robot.utils.io import CheckpointError

DEFAULTS = {
    "encoder_dir": "",  # a saved encoder (Encoder.save_pretrained / a policy's encoder/)
    "encoder_name": "",  # used when encoder_dir is empty: build_encoder(name, checkpoint=...); "" = random (untrained control)
    "checkpoint": "",
    "layer": -1,  # -1 = the encoder's own layer
    "pooling": "",  # "" = the saved encoder's pooling, or average for a built one
    "image_topic": "camera/image_raw",
    "compressed": False,
    "qos_depth": 10,
    "qos_reliability": "best_effort",  # best_effort | reliable
    "prescale": True,  # centre square + integer box downscale to >= 2x the encoder's input before its own resize
    "features_topic": "toto/features",
    "device": "cpu",
    "report_every_s": 10.0,
    "diagnostics_period_s": 1.0,
    "torch_threads": 1,  # intra-op threads for inference; 1 leaves cores to DDS and the executor (0 = torch default)
    "precision": "",  # "" = the encoder's own (float32 unless saved otherwise); bfloat16: the backbone's matmuls in bfloat16
}


def encoder_from_params(p: dict, log=None):
    """The node's parameters -> encoder, or ConfigError naming what cannot apply."""
    layer = p["layer"] if p["layer"] >= 0 else None
    try:
        if not p["encoder_dir"]:
            enc = build_encoder(p["encoder_name"] or "random", checkpoint=p["checkpoint"] or None, layer=layer,
                                pooling=p["pooling"] or "average")
            if not p["encoder_name"] and log:
                log("no encoder_dir or encoder_name: an untrained 'random' encoder (a control, not a model)")
            apply_precision(enc, p["precision"])
            return enc
        if p["checkpoint"] or p["encoder_name"]:
            raise ConfigError(f"encoder_dir ({p['encoder_dir']}) and encoder_name/checkpoint ({p['encoder_name']!r}, "
                              f"{p['checkpoint']!r}) are both set: give one (a saved encoder, or a name + checkpoint)")
        enc = load_encoder(p["encoder_dir"])
    except (KeyError, ValueError, CheckpointError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from e
    apply_precision(enc, p["precision"])
    if p["pooling"] and p["pooling"] != enc.pooling:
        raise ConfigError(f"pooling:={p['pooling']} cannot apply to the saved encoder {p['encoder_dir']}: its {enc.pooling} pool "
                          f"was trained with the policy/probe that uses it. Leave pooling unset, or save an encoder with that pooling")
    if layer is not None and layer != enc.layer:
        lo = 1 if enc.kind == "toto" else 0
        if not lo <= layer <= enc.num_layers:
            raise ConfigError(f"layer:={layer} is outside the saved encoder's layers {lo}..{enc.num_layers} ({p['encoder_dir']})")
        trained = sum(t.numel() for t in enc.pool.parameters())
        if trained:
            raise ConfigError(f"layer:={layer} cannot apply to the saved encoder {p['encoder_dir']}: its {enc.pooling} pool "
                              f"({trained} trained weights) was trained on layer {enc.layer} features. Leave layer unset")
        saved, enc.layer = enc.layer, layer  # average pooling has no weights: any layer's tokens pool the same way
        if log:
            log(f"layer {layer} applied to the saved encoder (saved with layer {saved}; {enc.pooling} pooling has no trained weights)")
    return enc


class EncoderNode(Node):
    NODE_NAME = "toto_encoder"

    def __init__(self, **node_kwargs):
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        qos = camera_qos(p["qos_depth"], p["qos_reliability"])
        if p["torch_threads"] > 0:
            torch.set_num_threads(p["torch_threads"])
        self.encoder = encoder_from_params(p, self.get_logger().info).to(p["device"]).eval()
        self.min_side = 2 * int(getattr(self.encoder, "input_size", 0)) if p["prescale"] else 0
        self.pub = self.create_publisher(Float32MultiArray, p["features_topic"], 10)
        self.header_pub = self.create_publisher(Header, p["features_topic"] + "/header", 10)
        self.stats = StreamStats()
        msg_type = CompressedImage if p["compressed"] else Image
        self.sub = self.create_subscription(msg_type, p["image_topic"], self.on_image, qos)
        self.worker = LatestWorker(self.encode, self.stats, self.get_logger(), name="toto_encoder_worker",
                                   bad_input=(ImageEncodingError, FrameFormatError))
        self.diagnostics = Diagnostics(self, self.stats, p["diagnostics_period_s"], f"{self.get_name()}: camera features",
                                       hardware_id=self.resolve_topic_name(p["image_topic"]))
        self.create_timer(p["report_every_s"], self.report)
        self.get_logger().info(f"{self.encoder.name} (layer {self.encoder.layer}, {self.encoder.pooling} pooling, {self.encoder.precision}, "
                               f"{self.encoder.feature_dim}-d) {p['image_topic']} ({msg_type.__name__}, {p['qos_reliability']}, "
                               f"depth {p['qos_depth']}) -> {p['features_topic']}")

    @property
    def frames(self) -> int:
        return self.stats.processed

    @property
    def dropped(self) -> int:
        return self.stats.unreadable

    def on_image(self, msg, info) -> None:  # two arguments: rclpy then passes the MessageInfo (sequence numbers)
        self.stats.on_receive(info)
        self.worker.submit(msg)

    def decode(self, msg) -> np.ndarray:
        if self.p["compressed"]:
            return compressed_msg_to_array(msg, self.min_side)
        return image_msg_to_array(msg, self.min_side)

    def encode(self, msg) -> None:
        t0 = time.perf_counter()
        img = self.decode(msg)
        with torch.no_grad():
            feats = self.encoder(img[None])[0].cpu().numpy()
        self.pub.publish(array_to_multiarray(feats.astype(np.float32)))
        self.header_pub.publish(msg.header)
        self.stats.on_done(stamp_ns(msg.header.stamp), self.get_clock().now().nanoseconds, time.perf_counter() - t0)

    def report(self) -> None:
        s = self.stats.snapshot()
        if s["frames_received"]:
            self.get_logger().info(f"{s['rate_hz']:.1f} Hz, latency median {s['latency_median_ms']:.1f} ms (p95 {s['latency_p95_ms']:.1f}), "
                                   f"{s['processing_median_ms']:.1f} ms/frame; frames: {s['frames_received']} received, "
                                   f"{s['frames_lost']} lost, {s['frames_stale']} stale, {s['frames_unreadable']} unreadable; "
                                   f"{s['errors']} errors")

    def close(self) -> None:
        self.worker.stop()


def main(args=None):
    spin(EncoderNode, args)


if __name__ == "__main__":
    main()
