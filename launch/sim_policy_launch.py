"""Closed loop in simulation through typed messages: the MuJoCo bridge publishes frames, JointState and
the end-effector PoseStamped; the policy node answers each frame with a TwistStamped + gripper command,
which the bridge executes (lockstep: step for step what an offline rollout does).

    ros2 launch toto_robot sim_policy_launch.py policy_dir:=runs/policy/bc/<run>/policy task:=franka_cabinet
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from toto_robot.ros.dds import PROFILE


def nodes(context):
    from toto_robot.sim_envs import TASK_IDS
    from toto_robot.sim_envs.robots import GRIPPER_PREFIX, PREFIX, ROBOTS

    share = get_package_share_directory("toto_robot")
    task = LaunchConfiguration("task").perform(context)
    robot = ROBOTS[TASK_IDS[task][1]]
    joints = {"joint_names": [PREFIX + j for j in robot.joints],
              "gripper_joint_names": [f"{PREFIX}{GRIPPER_PREFIX}finger_joint{i}" for i in (1, 2)]}
    return [
        Node(package="toto_robot", executable="toto_sim_camera", name="toto_sim_camera", output="screen",
             parameters=[os.path.join(share, "params", "sim_camera.yaml"),
                         {"task": task, "mode": "external", "action_msg_type": "twist", "lockstep": True}]),
        Node(package="toto_robot", executable="toto_policy_node", name="toto_policy", output="screen",
             parameters=[os.path.join(share, "params", "sim_policy.yaml"), {"policy_dir": LaunchConfiguration("policy_dir"), **joints}]),
    ]


def generate_launch_description():
    return LaunchDescription([
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", default_value=str(PROFILE))),
        DeclareLaunchArgument("policy_dir", description="folder written by toto-robot train-policy"),
        DeclareLaunchArgument("task", default_value="franka_cabinet"),
        OpaqueFunction(function=nodes),
    ])
