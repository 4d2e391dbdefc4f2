"""Expert reward for metaworld-reach: move the fingertips to the goal point.

Dense term: minus the fingertip-to-goal distance (m). Bonus: +1 while within the env's 5 cm
success radius. Small action cost. With action=None it is a state-only potential.
"""

import numpy as np

# obs[0:3] is the wrist; the fingertip centre (what Meta-World's success test uses) is ~4.5 cm lower.
TCP_OFFSET = np.array([0.0, 0.0, -0.045])
SUCCESS_RADIUS = 0.05


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    dist = float(np.linalg.norm(tcp - view.goal_pos))
    reach = -dist
    bonus = 1.0 if dist < SUCCESS_RADIUS else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    return reach + bonus + ctrl, {"reach": reach, "success_bonus": bonus, "ctrl": ctrl}
