"""``toto_encoder_node``: camera frames in, frozen-encoder features out.

    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_dir:=runs/bc/<run>/policy/encoder
    ros2 run toto_robot toto_encoder_node --ros-args -p encoder_name:=toto -p checkpoint:=runs/pretrain/<run>/final

Subscribes ``image_topic`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8), publishes the
pooled feature vector on ``features_topic`` (std_msgs/Float32MultiArray). A frame that cannot be
read is logged with the reason and dropped; the node keeps running.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray

from toto_robot.encoders import build_encoder, load_encoder
from toto_robot.ros.convert import ImageEncodingError, array_to_multiarray, image_msg_to_array
from toto_robot.ros_nodes.common import declare, spin

DEFAULTS = {
    "encoder_dir": "",  # a saved encoder (Encoder.save_pretrained / a policy's encoder/)
    "encoder_name": "random",  # used when encoder_dir is empty: build_encoder(name, checkpoint=...)
    "checkpoint": "",
    "layer": -1,  # -1 = the encoder's default layer
    "pooling": "average",
    "image_topic": "camera/image_raw",
    "features_topic": "toto/features",
    "device": "cpu",
    "qos_depth": 2,
}


class EncoderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_encoder", **node_kwargs)
        self.p = p = declare(self, DEFAULTS)
        if p["encoder_dir"]:
            self.encoder = load_encoder(p["encoder_dir"], map_location=p["device"])
        else:
            kw = {"pooling": p["pooling"]}
            if p["checkpoint"]:
                kw["checkpoint"] = p["checkpoint"]
            if p["layer"] >= 0:
                kw["layer"] = p["layer"]
            self.encoder = build_encoder(p["encoder_name"], **kw).to(p["device"])
        self.encoder.eval()
        self.pub = self.create_publisher(Float32MultiArray, p["features_topic"], p["qos_depth"])
        self.sub = self.create_subscription(Image, p["image_topic"], self.on_image, p["qos_depth"])
        self.frames, self.dropped, self.latency = 0, 0, 0.0
        self.get_logger().info(f"{self.encoder.name} (layer {self.encoder.layer}, {self.encoder.feature_dim}-d) "
                               f"{p['image_topic']} -> {p['features_topic']}")

    def on_image(self, msg: Image) -> None:
        try:
            img = image_msg_to_array(msg)
        except ImageEncodingError as e:
            self.dropped += 1
            self.get_logger().error(f"dropping frame: {e}", throttle_duration_sec=5.0)
            return
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = self.encoder(img[None])[0].cpu().numpy()
        self.latency = time.perf_counter() - t0
        self.frames += 1
        self.pub.publish(array_to_multiarray(feats.astype(np.float32)))


def main(args=None):
    spin(EncoderNode, args)


if __name__ == "__main__":
    main()
