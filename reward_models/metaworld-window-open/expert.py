"""Expert reward for metaworld-window-open: reach the window handle, then slide it open along +x.

Terms: minus the fingertip-to-handle distance (reach); minus three times the handle's x distance
from the goal's x (slide: 0.24 m of travel; like the env's test, only x counts, because goal_pos
is not a handle position); +1 while the env's test |handle_x - goal_x| <= 0.05 holds; a small
action cost. With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_TOL = 0.05


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    reach = -float(np.linalg.norm(tcp - view.handle_pos))
    handle_to_goal = abs(float(view.handle_pos[0] - view.goal_pos[0]))
    slide = -3.0 * handle_to_goal
    bonus = 1.0 if handle_to_goal <= SUCCESS_TOL else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + slide + bonus + ctrl
    return reward, {"reach": reach, "slide": slide, "success_bonus": bonus, "ctrl": ctrl}
