"""Expert reward for metaworld-reach: move the fingertips to the goal point.

Dense term: minus the fingertip-to-goal distance (m). Bonus: +1 while within the env's 5 cm
success radius. Small action cost. With action=None it is a state-only potential.

Written once for a batch: views may carry a leading batch axis, so every operation works on the
last axis; `compute_reward` is the one-transition form of the same function.
"""

import numpy as np

# obs[0:3] is the wrist; the fingertip centre (what Meta-World's success test uses) is ~4.5 cm lower.
TCP_OFFSET = np.array([0.0, 0.0, -0.045])
SUCCESS_RADIUS = 0.05


def compute_reward_batch(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    dist = np.linalg.norm(tcp - view.goal_pos, axis=-1)
    reach = -dist
    bonus = np.where(dist < SUCCESS_RADIUS, 1.0, 0.0)
    ctrl = 0.0 * dist
    if action is not None:
        ctrl = -0.01 * np.sum(np.square(np.asarray(action)[..., :3]), axis=-1)
    return reach + bonus + ctrl, {"reach": reach, "success_bonus": bonus, "ctrl": ctrl}


def compute_reward(view, action):
    reward, parts = compute_reward_batch(view, action)
    return float(reward), {name: float(value) for name, value in parts.items()}
