"""ROS 2 nodes (rclpy): encoder, policy, demonstration recorder, MuJoCo camera bridge."""
