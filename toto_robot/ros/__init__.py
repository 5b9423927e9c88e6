"""ROS 2 glue that does not need a running graph: message <-> numpy conversions."""
from toto_robot.ros.convert import ImageEncodingError, array_to_image_msg, array_to_multiarray, image_msg_to_array, multiarray_to_array

__all__ = ["ImageEncodingError", "image_msg_to_array", "array_to_image_msg", "array_to_multiarray", "multiarray_to_array"]
