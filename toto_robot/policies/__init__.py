"""Policies on frozen encoders: behaviour cloning, PPO, evaluation and encoder comparison."""
from toto_robot.policies.evaluate import evaluate_policy, wilson_interval
from toto_robot.policies.heads import MLPHead as PolicyHead
from toto_robot.policies.policy import Policy, load_policy

__all__ = ["Policy", "PolicyHead", "load_policy", "evaluate_policy", "wilson_interval"]
