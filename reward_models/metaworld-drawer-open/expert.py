"""Expert reward for metaworld-drawer-open: reach the drawer handle, then pull it to the open position.

Terms: minus the fingertip-to-handle distance (reach); minus three times the handle's distance
from its fully-open position `goal_pos` (open: 0.2 m of travel, weighted so pulling dominates);
+1 while within the env's 3 cm success radius; a small action cost.
With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_RADIUS = 0.03


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    reach = -float(np.linalg.norm(tcp - view.handle_pos))
    handle_to_goal = float(np.linalg.norm(view.handle_pos - view.goal_pos))
    opened = -3.0 * handle_to_goal
    bonus = 1.0 if handle_to_goal < SUCCESS_RADIUS else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + opened + bonus + ctrl
    return reward, {"reach": reach, "open": opened, "success_bonus": bonus, "ctrl": ctrl}
