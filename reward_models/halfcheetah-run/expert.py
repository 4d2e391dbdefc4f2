"""Expert reward for halfcheetah-run: run forward fast, cheaply.

Gymnasium's own HalfCheetah reward: forward velocity (m/s, root x velocity from the observation)
minus 0.1 times the squared action norm. With action=None only the velocity term remains, a
state-only potential.
"""

import numpy as np

CTRL_COST = 0.1  # HalfCheetah-v5's default ctrl_cost_weight


def compute_reward(view, action):
    forward = float(view.vel_x)
    ctrl = 0.0
    if action is not None:
        ctrl = -CTRL_COST * float(np.sum(np.square(action)))
    return forward + ctrl, {"forward": forward, "ctrl": ctrl}
