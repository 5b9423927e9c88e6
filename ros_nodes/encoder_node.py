"""``toto_encoder_node``: camera frames in, frozen-encoder features out.

    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_dir:=runs/bc/<run>/policy/encoder
    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_name:=toto -p checkpoint:=runs/pretrain/<run>/final

Subscribes ``image_topic`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8; or, with
``compressed:=true``, sensor_msgs/CompressedImage jpeg/png) with sensor-data QoS (keep last 1:
stale frames are dropped, never queued). Inference runs on a worker thread on the newest frame.
Publishes the pooled feature vector on ``features_topic`` (std_msgs/Float32MultiArray) and, on
``<features_topic>/header``, the std_msgs/Header of the frame it came from (stamp preserved).
Logs rate and latency every ``report_every_s``. A frame that cannot be read is logged and dropped.
"""
from __future__ import annotations

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32MultiArray, Header

from toto_robot.encoders import encoder_from_spec
from toto_robot.encoders.base import FrameFormatError
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, compressed_msg_to_array, image_msg_to_array
from toto_robot.ros_nodes.common import LatestWorker, declare, sensor_qos, spin

DEFAULTS = {
    "encoder_dir": "",  # a saved encoder (Encoder.save_pretrained / a policy's encoder/)
    "encoder_name": "random",  # used when encoder_dir is empty: build_encoder(name, checkpoint=...)
    "checkpoint": "",
    "layer": -1,  # -1 = the encoder's default layer
    "pooling": "average",
    "image_topic": "camera/image_raw",
    "compressed": False,
    "features_topic": "toto/features",
    "device": "cpu",
    "report_every_s": 10.0,
    "torch_threads": 1,  # intra-op threads for inference; 1 leaves cores to DDS and the executor (0 = torch default)
}


class EncoderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_encoder", **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if p["torch_threads"] > 0:
            torch.set_num_threads(p["torch_threads"])
        # ROS parameters cannot be null: "" and -1 mean "not set"
        self.encoder = encoder_from_spec({"dir": p["encoder_dir"] or None, "name": p["encoder_name"], "checkpoint": p["checkpoint"] or None,
                                          "layer": p["layer"] if p["layer"] >= 0 else None, "pooling": p["pooling"]}).to(p["device"]).eval()
        self.pub = self.create_publisher(Float32MultiArray, p["features_topic"], 10)
        self.header_pub = self.create_publisher(Header, p["features_topic"] + "/header", 10)
        msg_type = CompressedImage if p["compressed"] else Image
        self.sub = self.create_subscription(msg_type, p["image_topic"], self.on_image, sensor_qos())
        self.worker = LatestWorker(self.encode, name="toto_encoder_worker")
        self.dropped = 0
        self.create_timer(p["report_every_s"], self.report)
        self.get_logger().info(f"{self.encoder.name} (layer {self.encoder.layer}, {self.encoder.feature_dim}-d) "
                               f"{p['image_topic']} -> {p['features_topic']}")

    @property
    def frames(self) -> int:
        return self.worker.processed

    def on_image(self, msg) -> None:
        self.worker.submit(msg)

    def encode(self, msg) -> None:
        try:
            img = compressed_msg_to_array(msg) if self.p["compressed"] else image_msg_to_array(msg)
            with torch.no_grad():
                feats = self.encoder(img[None])[0].cpu().numpy()
        except (ImageEncodingError, FrameFormatError) as e:
            self.dropped += 1
            self.get_logger().error(f"dropping frame: {e}", throttle_duration_sec=5.0)
            return
        self.pub.publish(array_to_multiarray(feats.astype(np.float32)))
        self.header_pub.publish(msg.header)

    def report(self) -> None:
        if self.worker.processed:
            self.get_logger().info(f"{self.worker.rate_hz():.1f} Hz, {self.worker.mean_latency_ms():.1f} ms/frame, "
                                   f"{self.worker.replaced} stale frames skipped, {self.dropped} unreadable")

    def close(self) -> None:
        self.worker.stop()


def main(args=None):
    spin(EncoderNode, args)


if __name__ == "__main__":
    main()
