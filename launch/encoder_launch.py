"""Camera -> Toto features.  ros2 launch toto_robot encoder_launch.py encoder_dir:=<saved encoder> image_topic:=/camera/color/image_raw

Every process this launch starts gets the project's Fast DDS profile (unless FASTDDS_DEFAULT_PROFILES_FILE
is already set); start the camera driver with the same variable so full-size frames are not lost.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from toto_robot.ros.dds import PROFILE


def generate_launch_description():
    params = os.path.join(get_package_share_directory("toto_robot"), "params", "encoder.yaml")
    return LaunchDescription([
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(PROFILE))),
        DeclareLaunchArgument("encoder_dir", default_value="", description="saved encoder folder (empty: encoder_name)"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("compressed", default_value="false", description="true: sensor_msgs/CompressedImage (JPEG) input"),
        Node(package="toto_robot", executable="toto_encoder_node", name="toto_encoder", output="screen",
             parameters=[params, {"encoder_dir": LaunchConfiguration("encoder_dir"), "image_topic": LaunchConfiguration("image_topic"),
                                  "compressed": ParameterValue(LaunchConfiguration("compressed"), value_type=bool)}]),
    ])
