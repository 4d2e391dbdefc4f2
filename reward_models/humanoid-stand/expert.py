"""Expert reward for humanoid-stand: keep the torso high and upright, and stay still.

Terms: torso height mapped to [0, 1] between 0.8 m (fallen) and 1.4 m (standing), weighted 2;
uprightness, the vertical component of the torso's up axis clipped to [0, 1]; a small penalty on
horizontal torso speed (standing, not walking); a small action cost.
With action=None it is a state-only potential.
"""

import numpy as np

LOW = 0.8  # torso height (m) of a clearly fallen humanoid
HIGH = 1.4  # torso height (m) standing upright


def compute_reward(view, action):
    z = float(view.torso_z)
    height = 2.0 * float(np.clip((z - LOW) / (HIGH - LOW), 0.0, 1.0))
    q = view.torso_quat  # (w, x, y, z)
    upright = float(np.clip(1.0 - 2.0 * (q[1] ** 2 + q[2] ** 2), 0.0, 1.0))
    still = -0.1 * float(np.sum(np.square(view.torso_vel[0:2])))
    ctrl = 0.0
    if action is not None:
        ctrl = -0.1 * float(np.sum(np.square(action)))
    reward = height + upright + still + ctrl
    return reward, {"height": height, "upright": upright, "still": still, "ctrl": ctrl}
