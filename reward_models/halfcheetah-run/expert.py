"""Expert reward for halfcheetah-run: run forward fast, cheaply.

Gymnasium's own HalfCheetah reward: forward velocity (m/s, root x velocity from the observation)
minus 0.1 times the squared action norm. With action=None only the velocity term remains, a
state-only potential.

Written once for a batch (operations on the last axis); `compute_reward` is the one-transition form.
"""

import numpy as np

CTRL_COST = 0.1  # HalfCheetah-v5's default ctrl_cost_weight


def compute_reward_batch(view, action):
    forward = np.asarray(view.vel_x, dtype=float)
    ctrl = 0.0 * forward
    if action is not None:
        ctrl = -CTRL_COST * np.sum(np.square(np.asarray(action)), axis=-1)
    return forward + ctrl, {"forward": forward, "ctrl": ctrl}


def compute_reward(view, action):
    reward, parts = compute_reward_batch(view, action)
    return float(reward), {name: float(value) for name, value in parts.items()}
