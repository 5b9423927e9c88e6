"""Helpers shared by the nodes: parameter declaration with defaults, running a node until shutdown."""
from __future__ import annotations

from rclpy.node import Node


def declare(node: Node, defaults: dict) -> dict:
    """Declare every parameter with its default; return their current values (overrides applied)."""
    for name, value in defaults.items():
        node.declare_parameter(name, value)
    return {name: node.get_parameter(name).value for name in defaults}


def spin(node_cls, args=None) -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = node_cls()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close() if hasattr(node, "close") else None
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
