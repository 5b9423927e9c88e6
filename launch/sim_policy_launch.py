"""Closed loop in simulation: the MuJoCo camera bridge feeds the policy node, whose actions drive the arm.

    ros2 launch toto_robot sim_policy_launch.py policy_dir:=runs/policy/bc/<run>/policy task:=franka_cabinet
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("toto_robot")
    return LaunchDescription([
        DeclareLaunchArgument("policy_dir", description="folder written by toto-robot train-policy"),
        DeclareLaunchArgument("task", default_value="franka_cabinet"),
        Node(package="toto_robot", executable="toto_sim_camera", name="toto_sim_camera", output="screen",
             parameters=[os.path.join(share, "params", "sim_camera.yaml"), {"task": LaunchConfiguration("task"), "mode": "external"}]),
        Node(package="toto_robot", executable="toto_policy_node", name="toto_policy", output="screen",
             parameters=[os.path.join(share, "params", "policy.yaml"), {"policy_dir": LaunchConfiguration("policy_dir")}]),
    ])
