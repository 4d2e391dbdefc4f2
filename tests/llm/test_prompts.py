"""Prompts built from task specs: interface description, few-shot examples, refinement, reflection."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from embodied.llm.prompts import (
    ComponentStats,
    few_shot_examples,
    generation_messages,
    prompt_hash,
    refinement_messages,
    reflection_messages,
    reflection_text,
    task_interface,
)

REPO = Path(__file__).resolve().parents[2]
CHAIN = REPO / "tests" / "data" / "chain.toml"


@pytest.fixture(scope="module")
def reach_iface():
    return task_interface("metaworld-reach")


def test_interface_has_shapes_units_meanings_and_action_space(reach_iface) -> None:
    views = {v.name: v for v in reach_iface.views}
    assert views["hand_pos"].shape == (3,) and views["hand_pos"].unit == "m"
    assert views["gripper"].shape == ()
    text = reach_iface.describe()
    assert "hand_pos: np.ndarray  # shape (3,), m: end-effector" in text
    assert "gripper: float  # scalar, fraction" in text
    assert "action: np.ndarray  # shape (4,), float32, each in [-1, 1]" in text


def test_interface_without_building_the_env() -> None:
    spaces = (gym.spaces.Box(-np.inf, np.inf, (2,), np.float64), gym.spaces.Discrete(2))
    iface = task_interface(CHAIN, spaces=spaces)
    assert iface.views[0].name == "position" and iface.views[0].shape == ()
    assert "discrete, one of 0..1" in iface.action


def test_generation_prompt(reach_iface) -> None:
    messages = generation_messages("metaworld-reach", interface=reach_iface)
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert "def compute_reward(view, action) -> tuple[float, dict[str, float]]" in system
    assert "Only `import math` and `import numpy as np`" in system
    assert "move the robot gripper to the red goal point" in user
    assert "1. reach: move the gripper through free space" in user
    assert "150 steps" in user and "gamma = 0.99" in user
    assert "expert reward" not in user  # no few-shot unless asked


def test_few_shot_never_uses_the_target_task(reach_iface) -> None:
    root = REPO / "reward_models"
    examples = few_shot_examples("metaworld-reach", root, k=3)
    assert examples and all(name != "metaworld-reach" for name, _ in examples)
    assert all(name.startswith("metaworld-") for name, _ in examples)  # same suite first
    user = generation_messages("metaworld-reach", few_shot=True, examples_root=root, interface=reach_iface)[1][
        "content"
    ]
    assert "Expert reward for metaworld-reach" not in user
    assert f"different task ({examples[0][0]}" in user and "def compute_reward" in user


def test_few_shot_with_only_the_target_task(tmp_path: Path) -> None:
    (tmp_path / "metaworld-reach").mkdir()
    (tmp_path / "metaworld-reach" / "expert.py").write_text("def compute_reward(view, action):\n    return 0.0, {}\n")
    assert few_shot_examples("metaworld-reach", tmp_path) == []
    assert few_shot_examples("metaworld-reach", tmp_path / "missing") == []


def test_refinement_prompt(reach_iface) -> None:
    code = "def compute_reward(view, action):\n    return -1.0, {'x': -1.0}\n"
    messages = refinement_messages(
        "metaworld-reach", code, feedback="The arm overshoots the goal and oscillates.",
        rollout_stats={"success_rate": 0.2, "env_return": 12.5}, video="videos/reach.mp4", interface=reach_iface,
    )  # fmt: skip
    user = messages[1]["content"]
    assert code.strip() in user and '"success_rate": 0.2' in user
    assert "videos/reach.mp4" in user and "overshoots the goal" in user


def test_reflection_text_and_tips() -> None:
    comps = [
        ComponentStats("reach", (-0.5, -0.3, -0.1), 0.9),
        ComponentStats("flat", (1.0, 1.0, 1.0), None),
        ComponentStats("huge", (100.0, 300.0, 500.0), 0.1),
    ]
    text = reflection_text(0.0, comps, [0.0, 0.0, 0.1])
    assert "succeeded in 0%" in text and "rewrite the whole reward" in text
    assert "- reach: min -0.5, mean -0.3, max -0.1; correlation with success +0.90" in text
    assert "'flat' is nearly constant" in text and "'huge' is much larger" in text
    good = reflection_text(0.9, comps[:1])
    assert "rewrite" not in good and "Tips" not in good


def test_reflection_messages_include_best_and_failures(reach_iface) -> None:
    messages = reflection_messages(
        "metaworld-reach", "def compute_reward(view, action):\n    return 0.0, {}\n", "REFLECTION",
        ["sample 1: [syntax] at line 2: syntax error"], interface=reach_iface,
    )  # fmt: skip
    user = messages[1]["content"]
    assert "The best reward function so far" in user and "REFLECTION" in user
    assert "[syntax] at line 2" in user and user.rstrip().endswith("Answer with the code block only.")


def test_prompt_hash_is_stable_and_sensitive(reach_iface) -> None:
    a = generation_messages("metaworld-reach", interface=reach_iface)
    assert prompt_hash(a) == prompt_hash([dict(m) for m in a]) and len(prompt_hash(a)) == 16
    b = generation_messages(
        "metaworld-reach", few_shot=True, examples_root=REPO / "reward_models", interface=reach_iface
    )
    assert prompt_hash(a) != prompt_hash(b)
