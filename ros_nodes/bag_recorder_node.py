"""``toto_bag_recorder``: record topics into a rosbag2 (MCAP or sqlite3) as ``ros2 bag record`` does,
with the pure-Python ``rosbags`` writer (no rosbag2 install needed).

    ros2 run toto_robot toto_bag_recorder --ros-args -p output:=bags/run1
    toto-robot import-demos format=rosbag2 src=bags/run1 out_dir=demos/run1 format.read.episode_topic=/sim/episode_done

By default it records what the simulator bridge publishes (camera/image_raw, robot/state,
toto/action, sim/episode_done). Messages are stored serialized as they arrive (raw subscriptions,
CDR bytes, exactly what rosbag2 stores). Each message's bag time is its publish time (the DDS
source timestamp, ``stamp:=source``) or its arrival time (``stamp:=received``, what ``ros2 bag
record`` logs): with the publish time, messages a node sends one after the other keep that order in
the bag however the executor happens to take them. The bag is written under a hidden name and
renamed to ``output`` when the node shuts down, so ``output`` only ever holds a complete bag.
"""
from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

from rclpy.node import Node

from toto_robot.ros_nodes.common import declare, spin

DEFAULTS = {
    "output": "",
    "topics": ["camera/image_raw", "robot/state", "toto/action", "sim/episode_done"],
    "types": ["sensor_msgs/msg/Image", "std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float32MultiArray", "std_msgs/msg/Bool"],
    "storage": "mcap",  # mcap | sqlite3
    "stamp": "source",  # source (publish time) | received
    "qos_depth": 1000,
}


def message_class(msgtype: str):
    """"sensor_msgs/msg/Image" -> the rclpy message class."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class BagRecorderNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("toto_bag_recorder", **node_kwargs)
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        from toto_robot.utils.io import temp_path

        self.p = p = declare(self, DEFAULTS)
        if not p["output"]:
            raise ValueError("toto_bag_recorder needs the parameter output (the bag folder to create)")
        if len(p["topics"]) != len(p["types"]):
            raise ValueError(f"topics ({len(p['topics'])}) and types ({len(p['types'])}) must pair up")
        if p["storage"] not in ("mcap", "sqlite3") or p["stamp"] not in ("source", "received"):
            raise ValueError(f"storage must be mcap|sqlite3 and stamp source|received, got {p['storage']!r}, {p['stamp']!r}")
        self.output = Path(p["output"])
        if self.output.exists():
            raise ValueError(f"{self.output} exists; the recorder writes a new bag")
        self.stage = temp_path(self.output, directory=True)
        self.writer = Writer(self.stage / self.output.name, version=9,
                             storage_plugin=StoragePlugin.MCAP if p["storage"] == "mcap" else StoragePlugin.SQLITE3)
        self.writer.open()
        typestore = get_typestore(Stores.ROS2_KILTED)
        self.counts: dict[str, int] = {}
        self._conns = {}
        for topic, msgtype in zip(p["topics"], p["types"]):
            sub = self.create_subscription(message_class(msgtype), topic, lambda data, info, t=topic: self.on_message(t, data, info),
                                           p["qos_depth"], raw=True)
            self._conns[topic] = self.writer.add_connection(sub.topic_name, msgtype, typestore=typestore)  # the resolved /name
            self.counts[topic] = 0
        self.closed = False
        self.get_logger().info(f"recording {', '.join(p['topics'])} to {self.output}")

    def on_message(self, topic: str, data: bytes, info) -> None:
        key = "source_timestamp" if self.p["stamp"] == "source" else "received_timestamp"
        stamp = int(info[key]) or self.get_clock().now().nanoseconds
        self.writer.write(self._conns[topic], stamp, data)
        self.counts[topic] += 1

    def close(self) -> Path | None:
        """Finish the bag (metadata.yaml) and move it to ``output``."""
        if self.closed:
            return self.output
        self.closed = True
        self.writer.close()
        os.replace(self.stage / self.output.name, self.output)
        shutil.rmtree(self.stage, ignore_errors=True)
        self.get_logger().info(f"wrote {self.output}: {self.counts}")
        return self.output


def record_sim_episodes(output: str | Path, task: str, episodes: int, image_size: int = 64, rate_hz: float = 100.0, seed: int = 0,
                        timeout_s: float = 600.0) -> Path:
    """Run the simulator bridge (scripted expert) and this recorder in one process until ``episodes`` episodes
    have ended, and return the finished bag: simulated demonstrations that went through ROS topics.

    The bridge is spun only after DDS has matched all four of its publishers to the recorder, and its
    first frame is published again then, so the bag holds every step of every episode."""
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from toto_robot.ros_nodes.sim_camera_node import SimCameraNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        rec = BagRecorderNode(context=ctx, parameter_overrides=[Parameter("output", value=str(output))])
        sim = SimCameraNode(context=ctx, parameter_overrides=[Parameter("task", value=task), Parameter("rate_hz", value=float(rate_hz)),
                                                              Parameter("image_size", value=int(image_size)), Parameter("seed", value=int(seed)),
                                                              Parameter("max_episodes", value=int(episodes))])
        pubs = (sim.image_pub, sim.state_pub, sim.action_pub, sim.done_pub)
        end = time.monotonic() + 30
        while time.monotonic() < end and not all(p.get_subscription_count() for p in pubs):
            time.sleep(0.05)
        if not all(p.get_subscription_count() for p in pubs):
            raise RuntimeError("the bag recorder did not discover the simulator bridge's topics within 30 s")
        sim._reset()  # the frame published before discovery went nowhere: publish episode 0's first frame again
        ex = SingleThreadedExecutor(context=ctx)
        for node in (rec, sim):
            ex.add_node(node)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and sim.episode < episodes:
            ex.spin_once(timeout_sec=0.05)
        for _ in range(20):
            ex.spin_once(timeout_sec=0.02)  # messages still in flight
        if sim.episode < episodes:
            raise RuntimeError(f"only {sim.episode}/{episodes} episodes ended within {timeout_s} s")
        bag = rec.close()
        sim.close()
        for node in (rec, sim):
            node.destroy_node()
        return bag
    finally:
        rclpy.shutdown(context=ctx)


def main(args=None):
    spin(BagRecorderNode, args)


if __name__ == "__main__":
    main()
