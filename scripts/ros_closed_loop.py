"""A trained policy in closed loop through ROS 2 typed messages vs the same policy offline, same seeds.

    python scripts/ros_closed_loop.py --policy-dir runs/policy/bc/<run>/policy --episodes 30 [--seed 0]

Offline: ``evaluate_policy`` (seeds 10000 + 1000 * seed + episode). Over ROS (rclpy + Fast DDS, one
process, two nodes): the MuJoCo bridge publishes frames, JointState and the end-effector PoseStamped
on those seeds; the policy node reads them by joint name and answers each frame with a TwistStamped
(at the sim's full speed) + gripper command, which the bridge executes in lockstep. Prints both
success counts, and how many executed actions equal the offline rollout's bit for bit.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy-dir", required=True)
    ap.add_argument("--task", default="")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=3600)
    args = ap.parse_args()

    import rclpy
    import torch
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter as P
    from tqdm.auto import tqdm

    from toto_robot.policies import load_policy
    from toto_robot.policies.evaluate import EVAL_SEED_OFFSET, evaluate_policy
    from toto_robot.ros.dds import use_profile
    from toto_robot.ros_nodes.policy_node import PolicyNode
    from toto_robot.ros_nodes.sim_camera_node import SimCameraNode

    torch.set_num_threads(1)
    policy = load_policy(args.policy_dir)
    task = args.task or policy.meta["task"]
    image_size = int(policy.meta.get("image_size", 64))
    offline_actions = []
    act = policy.act
    t0 = time.monotonic()
    offline = evaluate_policy(lambda obs: (offline_actions.append(np.asarray(act(obs), np.float32)), offline_actions[-1])[1],
                              task, episodes=args.episodes, seed=args.seed, image_size=image_size)
    t_off = time.monotonic() - t0

    use_profile()
    rclpy.init()
    sim = SimCameraNode(parameter_overrides=[P("task", value=task), P("image_size", value=image_size), P("mode", value="external"),
                                             P("action_msg_type", value="twist"), P("seed", value=EVAL_SEED_OFFSET + 1000 * args.seed),
                                             P("max_episodes", value=args.episodes), P("rate_hz", value=5.0)])
    executed = []
    step = sim.env.step
    sim.env.step = lambda a: (executed.append(np.asarray(a, np.float32).copy()), step(a))[1]
    node = PolicyNode(parameter_overrides=[
        P("policy_dir", value=args.policy_dir), P("state_msg_type", value="joint_state"), P("state_topic", value="joint_states"),
        P("joint_names", value=sim.joint_names[:7]), P("gripper_joint_names", value=sim.joint_names[7:]), P("pose_topic", value="toto/ee_pose"),
        P("output", value="twist"), P("max_linear_speed", value=sim.full_speed), P("rate_hz", value=0.0), P("command_stamp", value="frame"),
        P("max_action_norm", value=0.0), P("stale_timeout_s", value=10.0)])
    ex = SingleThreadedExecutor()
    ex.add_node(sim)
    ex.add_node(node)
    t0 = time.monotonic()
    with tqdm(total=args.episodes, desc="ROS closed loop", unit="ep") as bar:
        while sim.episode < args.episodes and time.monotonic() - t0 < args.timeout_s:
            ex.spin_once(timeout_sec=0.05)
            bar.update(sim.episode - bar.n)
    t_ros = time.monotonic() - t0
    n = min(len(executed), len(offline_actions))
    same = int(sum(np.array_equal(a, b) for a, b in zip(executed[:n], offline_actions[:n])))
    print(f"{task}, {args.episodes} episodes (seeds {EVAL_SEED_OFFSET + 1000 * args.seed}..), policy {args.policy_dir}")
    print(f"  offline          {offline['successes']:3d}/{args.episodes} successes, {len(offline_actions)} steps, {t_off:.0f} s")
    print(f"  ROS TwistStamped {sim.successes:3d}/{sim.episode} successes, {len(executed)} steps, {t_ros:.0f} s "
          f"({len(executed) / max(t_ros, 1e-9):.1f} steps/s); {same}/{n} executed actions equal the offline ones bit for bit; "
          f"{sim.refused} commands refused, {node.stats.errors} errors")
    node.destroy_node()
    sim.close()
    sim.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
