"""Expert reward for metaworld-push: bring the fingertips to the puck, then the puck to the goal.

Terms: minus the fingertip-to-puck distance (reach), minus twice the puck-to-goal distance in the
table plane (push; weighted higher so moving the puck pays more than hovering near it), +1 while
the puck is within the env's 5 cm success radius, and a small action cost.
With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_RADIUS = 0.05


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    tcp_to_obj = float(np.linalg.norm(tcp - view.obj_pos))
    obj_to_goal = float(np.linalg.norm(view.obj_pos[0:2] - view.goal_pos[0:2]))
    reach = -tcp_to_obj
    push = -2.0 * obj_to_goal
    bonus = 1.0 if float(np.linalg.norm(view.obj_pos - view.goal_pos)) < SUCCESS_RADIUS else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + push + bonus + ctrl
    return reward, {"reach": reach, "push": push, "success_bonus": bonus, "ctrl": ctrl}
