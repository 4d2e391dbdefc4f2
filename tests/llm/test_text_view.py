"""Text views of observations for LLM judges: exact renderings, the character budget, real MiniHack screens."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.llm.text_view import (
    MiniHackTextView,
    TextViewError,
    ViewConfig,
    config_from_options,
    inventory_names,
    is_blank,
    minihack_action_names,
    text_view_for,
)
from embodied.tasks.spec import load_task

ACTIONS = ("N", "E", "S", "W", "NE", "SE", "SW", "NW", "PICKUP", "APPLY")
ROOM = ["-------", "|.(..>|", "|..@..|", "+.....|", "-------"]


def room_obs(message: str = "Hello", key: bool = True) -> dict[str, np.ndarray]:
    """A 21x79 screen with a small room (rows 5-9, columns 10-16), the agent at x=13, y=7."""
    chars = np.full((21, 79), ord(" "), np.uint8)
    for i, row in enumerate(ROOM):
        chars[5 + i, 10 : 10 + len(row)] = np.frombuffer(row.encode(), np.uint8)
    blstats = np.zeros(27, np.int64)
    blstats[[0, 1, 10, 11, 12, 20]] = [13, 7, 10, 12, 1, 42]
    msg = np.zeros(256, np.uint8)
    msg[: len(message)] = np.frombuffer(message.encode(), np.uint8)
    inv = np.full(55, 5976, np.int16)
    if key:
        inv[0] = 2102
    return {"chars": chars, "blstats": blstats, "message": msg, "inv_glyphs": inv}


def test_render_crop_is_exact() -> None:
    view = MiniHackTextView(ViewConfig(radius=2), ACTIONS)
    assert view.render(room_obs()) == (
        "Map (5x5 around you, @ = you):\n"
        "-----\n"
        ".(..>\n"
        "..@..\n"
        ".....\n"
        "-----\n"
        "Legend: @ you; . floor or doorless doorway; - wall, or an open door in a vertical wall; "
        "( tool or weapon item (e.g. a key); > staircase down\n"
        "Message: Hello\n"
        "Inventory: skeleton key\n"
        "Stats: HP 10/12, turn 42, depth 1, position x=13 y=7"
    )


def test_full_map_is_the_bounding_box_of_what_was_seen() -> None:
    view = MiniHackTextView(ViewConfig(map="full", legend=False, stats=False, inventory=False, message=False))
    assert view.render(room_obs()) == "Map (everything seen so far, @ = you):\n" + "\n".join(ROOM)


def test_crop_pads_at_the_screen_edge_and_sections_can_be_switched_off() -> None:
    obs = room_obs()
    obs["blstats"][:2] = [0, 0]  # agent reported at the top-left corner: the crop is padded with blanks
    view = MiniHackTextView(ViewConfig(radius=1, legend=False, stats=False, inventory=False, message=False))
    assert view.render(obs) == "Map (3x3 around you, @ = you):\n   \n   \n   "


def test_budget_shrinks_the_map_then_drops_sections_then_cuts() -> None:
    obs = room_obs(message="You see here a key named The Master Key of Thievery.")
    full = MiniHackTextView(ViewConfig(radius=4), ACTIONS).render(obs)
    assert len(full) == 515
    for budget in (80, 120, 200, 300, 515, 2000):
        text = MiniHackTextView(ViewConfig(radius=4, budget=budget), ACTIONS).render(obs)
        assert len(text) <= budget
    assert MiniHackTextView(ViewConfig(radius=4, budget=515)).render(obs) == full
    map3 = "Map (3x3 around you, @ = you):\n(..\n.@.\n...\n"
    message = "Message: You see here a key named The Master Key of Thievery."
    stats = "Stats: HP 10/12, turn 42, depth 1, position x=13 y=7"
    # 300: the crop shrank from 9x9 to 3x3 before any section was dropped.
    text = MiniHackTextView(ViewConfig(radius=4, budget=300)).render(obs)
    assert text.startswith(map3 + "Legend: @ you;") and text.endswith(stats)
    # Then sections go in this order: legend, stats, inventory, message (kept longest).
    assert MiniHackTextView(ViewConfig(radius=4, budget=200)).render(obs) == (
        f"{map3}{message}\nInventory: skeleton key\n{stats}"
    )
    assert MiniHackTextView(ViewConfig(radius=4, budget=120)).render(obs) == f"{map3}{message}"
    assert MiniHackTextView(ViewConfig(radius=4, budget=80)).render(obs) == map3.rstrip("\n")
    # A full map that alone exceeds the budget is cut.
    obs["chars"][0, 0] = obs["chars"][20, 78] = ord("-")  # seen corners: the whole 21x79 screen is shown
    text = MiniHackTextView(ViewConfig(map="full", budget=80)).render(obs)
    assert len(text) == 80 and text.endswith("...") and text.startswith("Map (everything seen so far")


def test_transition_names_the_action_with_a_gloss() -> None:
    view = MiniHackTextView(ViewConfig(radius=1, legend=False, stats=False, inventory=False), ACTIONS)
    text = view.render_transition(room_obs("a"), np.int64(9), room_obs("b"))
    assert text == (
        "Before the action:\nMap (3x3 around you, @ = you):\n(..\n.@.\n...\nMessage: a\n\n"
        "Action: APPLY (apply (use) a tool, e.g. a key on an adjacent locked door)\n\n"
        "After the action:\nMap (3x3 around you, @ = you):\n(..\n.@.\n...\nMessage: b"
    )
    assert view.action_name(np.array([8])) == "PICKUP (pick up what lies at your position)"
    assert view.action_name(12) == "action 12"
    assert MiniHackTextView().action_name(0) == "action 0"


def test_blank_end_screen() -> None:
    blank = {k: np.zeros_like(v) for k, v in room_obs().items()}
    assert is_blank(blank) and not is_blank(room_obs())
    assert MiniHackTextView().render(blank).startswith("The game has ended: the screen is blank")


def test_inventory_from_strings_and_glyphs() -> None:
    obs = room_obs(key=False)
    obs["inv_glyphs"][:2] = [2103, 1935]
    assert inventory_names(obs) == ["lock pick", "short sword"]
    strs = np.zeros((55, 80), np.uint8)
    strs[0, :13] = np.frombuffer(b"a rusty dagger"[:13], np.uint8)
    assert inventory_names({"inv_strs": strs}) == ["a rusty dagge"]
    assert (
        MiniHackTextView(ViewConfig(radius=1))
        .render({**obs, "inv_glyphs": np.full(55, 5976, np.int16)})
        .count("Inventory: nothing")
        == 1
    )


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(TextViewError, match=r"radius must be in 1\.\.40, got 0"):
        ViewConfig(radius=0)
    with pytest.raises(TextViewError, match="map must be 'crop' or 'full', got 'wide'"):
        config_from_options({"map": "wide"})
    with pytest.raises(TextViewError, match="budget must be an integer, got 'lots'"):
        config_from_options({"budget": "lots"})
    with pytest.raises(TextViewError, match="unknown text view option 'colour'"):
        config_from_options({"colour": "1"})
    assert config_from_options({"radius": "2", "legend": "0"}) == ViewConfig(radius=2, legend=False)
    with pytest.raises(TextViewError, match="needs observation key 'chars'"):
        MiniHackTextView().render({"blstats": np.ones(27)})


def test_real_minihack_keyroom_screens() -> None:
    import embodied

    task = load_task("minihack-keyroom")
    assert minihack_action_names(task.env_id) == ACTIONS
    view = text_view_for(task, ViewConfig(radius=4))
    env = embodied.make(task)
    obs, _ = env.reset(seed=1)
    before = {k: v.copy() for k, v in obs.items()}  # NLE reuses its buffers
    after, *_ = env.step(0)  # N: onto the key
    text = view.render_transition(before, 0, after)
    lines = text.splitlines()
    assert lines[1] == "Map (9x9 around you, @ = you):"
    assert lines[2 + 4][4] == "@"  # the agent sits in the middle of the crop
    assert "Action: N (move north (up))" in text
    assert "Message: You see here a key named The Master Key of Thievery." in text.split("After the action:")[1]
    assert "skeleton key" not in text
    picked, *_ = env.step(8)  # PICKUP
    assert "skeleton key" in view.render(picked).split("Inventory: ")[1]
    env.close()


def test_generic_task_view_uses_named_views(chain_task) -> None:
    task = load_task(chain_task)
    view = text_view_for(task)
    assert view.render(np.array([3.0, 1.0])) == "position = 3. cells  (agent position on the integer line)"
    assert view.render_transition(np.array([0.0, 1.0]), 1, np.array([1.0, 1.0])).splitlines()[3] == "Action: action 1"
