"""ros_nodes"""
