"""Record demonstrations over ROS: the simulator's scripted expert (or your teleop on toto/action) -> the recorder.

    ros2 launch toto_robot record_demos_launch.py output_dir:=demos/franka_cabinet task:=franka_cabinet
then: toto-robot train-policy policy=bc demos=demos/franka_cabinet
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from toto_robot.ros.dds import PROFILE


def generate_launch_description():
    share = get_package_share_directory("toto_robot")
    return LaunchDescription([
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(PROFILE))),
        DeclareLaunchArgument("output_dir", description="demonstration folder to write"),
        DeclareLaunchArgument("task", default_value="franka_cabinet"),
        Node(package="toto_robot", executable="toto_sim_camera", name="toto_sim_camera", output="screen",
             parameters=[os.path.join(share, "params", "sim_camera.yaml"), {"task": LaunchConfiguration("task"), "mode": "expert"}]),
        Node(package="toto_robot", executable="toto_demo_recorder", name="toto_demo_recorder", output="screen",
             parameters=[os.path.join(share, "params", "demo_recorder.yaml"),
                         {"output_dir": LaunchConfiguration("output_dir"), "task": LaunchConfiguration("task")}]),
    ])
