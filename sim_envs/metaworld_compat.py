"""Run ``metaworld`` 3.1.1 under the project's MuJoCo 4.

metaworld 3.1.1 pins mujoco 3.3.0; its only break under MuJoCo 4 is ``SawyerMocapBase.reset_mocap_welds``:
it assigns an 11-number weld row (anchor xyz, relative pose xyz + quaternion, torque scale) to
``model.eq_data[i]``, whose rows have ``mjNEQDATA`` = 12 entries in MuJoCo 4 (an extra trailing field the
compiler fills), so the assignment raises "could not broadcast (11,) into (12,)". The replacement writes the
same 11 numbers into the row's first 11 entries (the same field layout as before) and leaves the extra
entry as the compiler set it. With it the scripted ``metaworld.policies`` solve the CortexBench tasks
(``tests/test_metaworld.py``). On a MuJoCo whose rows have 11 entries, metaworld's own method is kept.

    from toto_robot.sim_envs.metaworld_compat import patch_metaworld
    patch_metaworld()   # idempotent; the MetaWorld suite calls it before building an env
"""
from __future__ import annotations

import mujoco
import numpy as np

# metaworld's weld row: anchor (0, 0, 0), relative position (0, 0, 0), relative quaternion (-1, 0, 0, 0), torque scale 5
WELD_ROW = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])


def reset_mocap_welds(self) -> None:
    """``SawyerMocapBase.reset_mocap_welds`` for eq_data rows of any length >= 11."""
    if self.model.nmocap > 0 and self.model.eq_data is not None:
        for i in range(self.model.eq_data.shape[0]):
            if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                self.model.eq_data[i, :len(WELD_ROW)] = WELD_ROW


def needs_patch() -> bool:
    """True when this MuJoCo's equality rows are longer than metaworld's 11-number weld row."""
    m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><body name='b' mocap='true'/><body name='c'><joint type='free'/>"
                                       "<geom size='.1'/></body></worldbody><equality><weld body1='b' body2='c'/></equality></mujoco>")
    return m.eq_data.shape[1] != len(WELD_ROW)


def patch_metaworld() -> bool:
    """Install the replacement on metaworld's ``SawyerMocapBase`` when needed; returns whether it is installed."""
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    if SawyerMocapBase.reset_mocap_welds is reset_mocap_welds:
        return True
    if not needs_patch():
        return False
    SawyerMocapBase.metaworld_reset_mocap_welds = SawyerMocapBase.reset_mocap_welds  # metaworld's own, kept for reference
    SawyerMocapBase.reset_mocap_welds = reset_mocap_welds
    return True
