"""Expert reward for humanoid-kneel: bring the torso down to kneeling height, upright and still.

Terms: torso height band, 1 inside 0.7-1.0 m (upright kneeling ~0.9 m, sitting on heels ~0.7 m)
falling off as a Gaussian (0.15 m scale) outside it, weighted 2; uprightness, the vertical
component of the torso's up axis clipped to [0, 1]; knee bend, the mean of both knees' flexion
over 90 degrees clipped to [0, 1] (kneeling folds the knees; standing and lying flat do not);
a small penalty on vertical torso speed (falling through the band is not kneeling); a small
action cost. With action=None it is a state-only potential.
"""

import math

import numpy as np

BAND_LOW = 0.7  # m, torso height sitting on the heels
BAND_HIGH = 1.0  # m, upright kneeling is ~0.9
BAND_SCALE = 0.15  # m, fall-off outside the band
RIGHT_KNEE = 6  # index into joint_pos; knee angles are negative when bent
LEFT_KNEE = 10


def compute_reward(view, action):
    z = float(view.torso_z)
    outside = max(BAND_LOW - z, 0.0) + max(z - BAND_HIGH, 0.0)
    height = 2.0 * math.exp(-((outside / BAND_SCALE) ** 2))
    q = view.torso_quat  # (w, x, y, z)
    upright = float(np.clip(1.0 - 2.0 * (q[1] ** 2 + q[2] ** 2), 0.0, 1.0))
    knees = -0.5 * (float(view.joint_pos[RIGHT_KNEE]) + float(view.joint_pos[LEFT_KNEE]))
    knee_bend = 0.5 * float(np.clip(knees / (math.pi / 2), 0.0, 1.0))
    still = -0.1 * float(view.torso_vel[2]) ** 2
    ctrl = 0.0
    if action is not None:
        ctrl = -0.1 * float(np.sum(np.square(action)))
    reward = height + upright + knee_bend + still + ctrl
    return reward, {"height": height, "upright": upright, "knee_bend": knee_bend, "still": still, "ctrl": ctrl}
