"""sim_envs"""
