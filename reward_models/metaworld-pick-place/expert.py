"""Expert reward for metaworld-pick-place: reach the puck, grasp it, carry it to the goal in the air.

Terms: minus the fingertip-to-puck distance (reach); +0.5 while the puck sits between closed
fingers (grasp); minus twice the puck-to-goal distance in 3D (place; the goal is up to 0.3 m above
the table, so this pays for lifting); +1 while within the env's 7 cm success radius; a small action
cost. With action=None it is a state-only potential.
"""

import numpy as np

TCP_OFFSET = np.array([0.0, 0.0, -0.045])  # fingertip centre relative to the wrist (obs[0:3])
SUCCESS_RADIUS = 0.07


def compute_reward(view, action):
    tcp = view.hand_pos + TCP_OFFSET
    tcp_to_obj = float(np.linalg.norm(tcp - view.obj_pos))
    obj_to_goal = float(np.linalg.norm(view.obj_pos - view.goal_pos))
    reach = -tcp_to_obj
    # Fingers closed on the puck leave the gripper ~45 % open; fully closed on nothing reads ~0.
    held = tcp_to_obj < 0.03 and 0.2 < float(view.gripper) < 0.7
    grasp = 0.5 if held else 0.0
    place = -2.0 * obj_to_goal
    bonus = 1.0 if obj_to_goal < SUCCESS_RADIUS else 0.0
    ctrl = 0.0
    if action is not None:
        ctrl = -0.01 * float(np.sum(np.square(action[:3])))
    reward = reach + grasp + place + bonus + ctrl
    return reward, {"reach": reach, "grasp": grasp, "place": place, "success_bonus": bonus, "ctrl": ctrl}
