"""Camera -> Toto features.  ros2 launch toto_robot encoder_launch.py encoder_dir:=<saved encoder> image_topic:=/camera/color/image_raw"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    params = os.path.join(get_package_share_directory("toto_robot"), "params", "encoder.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("encoder_dir", default_value="", description="saved encoder folder (empty: encoder_name)"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        Node(package="toto_robot", executable="toto_encoder_node", name="toto_encoder", output="screen",
             parameters=[params, {"encoder_dir": LaunchConfiguration("encoder_dir"), "image_topic": LaunchConfiguration("image_topic")}]),
    ])
