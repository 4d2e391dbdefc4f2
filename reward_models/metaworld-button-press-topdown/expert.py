"""Expert reward for metaworld-button-press-topdown: get above the button, then press it down.

Terms: minus the fingertip-to-button-top distance (reach); minus ten times how far the button top
is above its pressed height (press: 9 cm of travel, weighted so pressing dominates); +1 while the
env's 2.4 cm success test holds; a small action cost. With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_TOL = 0.024


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    reach = -float(np.linalg.norm(tcp - view.button_pos))
    depth_left = abs(float(view.button_pos[2] - view.goal_pos[2]))
    press = -10.0 * depth_left
    bonus = 1.0 if depth_left <= SUCCESS_TOL else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + press + bonus + ctrl
    return reward, {"reach": reach, "press": press, "success_bonus": bonus, "ctrl": ctrl}
