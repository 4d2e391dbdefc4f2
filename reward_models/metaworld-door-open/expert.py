"""Expert reward for metaworld-door-open: reach the door handle, then swing the door to the goal.

Terms: minus the fingertip-to-handle distance (reach); minus twice the handle's x distance from
the goal's x (swing: ~0.5 m of travel; x only and two-sided, like the env's success test, which
fails a door swung more than 8 cm past the goal; goal_pos is a door target, not a handle position);
+1 while the env's test |handle_x - goal_x| <= 0.08 holds; a small action cost.
With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_TOL = 0.08


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    reach = -float(np.linalg.norm(tcp - view.handle_pos))
    dx = abs(float(view.handle_pos[0] - view.goal_pos[0]))
    swing = -2.0 * dx
    bonus = 1.0 if dx <= SUCCESS_TOL else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + swing + bonus + ctrl
    return reward, {"reach": reach, "swing": swing, "success_bonus": bonus, "ctrl": ctrl}
