"""The OOD monitor's state -> ROS messages (no running graph needed): a diagnostic_msgs/DiagnosticStatus at
OK / WARN / ERROR by the moving average's level, and std_msgs/Float32 scores.

    status = ood_status(monitor, "toto_policy: ood", held=False)
"""
from __future__ import annotations

from toto_robot.policies.ood import OODMonitor


def ood_status(monitor: OODMonitor, name: str, held: bool, hardware_id: str = ""):
    """The monitor's last frame score and moving average as one DiagnosticStatus; level from the average against its
    calibrated thresholds (``OODReference.level``)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    t, ref = monitor.ref.thresholds, monitor.ref
    level = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}[monitor.level]
    if monitor.average is None:
        message = "no frame scored yet"
    else:
        message = (f"out-of-distribution score {monitor.average:.3g} (moving average; WARN > {t['average_warn']:.3g}, "
                   f"ERROR > {t['average_error']:.3g})" + ("; commands held (ood_gate)" if held else ""))
    values = {"score": monitor.score, "average": monitor.average if monitor.average is not None else float("nan"), **t,
              "warn_rate": ref.warn_rate, "error_rate": ref.error_rate, "average_frames": ref.average_frames, "held": held}
    kv = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=kv)


def score_msg(value: float):
    from std_msgs.msg import Float32

    return Float32(data=float(value))
