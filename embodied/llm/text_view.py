"""Text renderings of observations for LLM judges (CALM-style credit assignment).

`MiniHackTextView` renders one MiniHack observation as a few labelled sections::

    Map (9x9 around you, @ = you):
    |..-@.|
    ...
    Legend: @ you, . floor, ...
    Message: You see here a key named The Master Key of Thievery.
    Inventory: short sword, dagger, ..., skeleton key
    Stats: HP 12/12, turn 5, depth 1, position x=40 y=9

and a transition (s, a, s') as "Before the action" / "Action: APPLY (...)" / "After the action".
Every rendering fits a character budget: when it would not, the map crop shrinks first, then the
legend, the stats, the inventory and the message are dropped, and only then is the text cut.

`TaskTextView` renders any task through its named views (name = value unit), for tasks that have
no hand-written renderer. Both are plain callables over one observation (not a batch).

Heavy imports (nle, for item names and action names) happen inside functions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from embodied.tasks.spec import TaskSpec


class TextViewError(ValueError):
    """A text view is misconfigured (bad option value) or got an observation it cannot render."""


@dataclass(frozen=True)
class ViewConfig:
    """What a text view shows and how long it may be.

    Attributes:
        map: "crop" = a (2·radius+1)² window of the screen centred on the agent; "full" = the
            bounding box of everything seen so far on the 21x79 screen.
        radius: half-size of the crop in cells (4 gives 9x9, like MiniHack's chars_crop).
        legend: list the meaning of every symbol that appears on the shown map.
        message: show the game's message line.
        inventory: show inventory item names (from `inv_strs` or `inv_glyphs`).
        stats: show HP, turn, depth and position (from `blstats`).
        budget: maximum characters of one rendered observation (a transition gets twice this
            plus the action line).
    """

    map: Literal["crop", "full"] = "crop"
    radius: int = 4
    legend: bool = True
    message: bool = True
    inventory: bool = True
    stats: bool = True
    budget: int = 1500

    def __post_init__(self) -> None:
        if self.map not in ("crop", "full"):
            raise TextViewError(f"text view option map must be 'crop' or 'full', got {self.map!r}")
        if not 1 <= int(self.radius) <= 40:
            raise TextViewError(f"text view option radius must be in 1..40, got {self.radius}")
        if int(self.budget) < 80:
            raise TextViewError(f"text view option budget must be at least 80 characters, got {self.budget}")


class TextView(Protocol):
    """Renders one observation, and one transition, as text for an LLM."""

    config: ViewConfig

    def render(self, obs: Any) -> str:
        """One observation (not a batch) as text of at most `config.budget` characters."""
        ...

    def render_transition(self, obs: Any, action: Any, next_obs: Any) -> str:
        """(s, a, s') as "Before the action / Action / After the action" sections."""
        ...

    def action_name(self, action: Any) -> str:
        """The action's name as the environment calls it, with a short gloss."""
        ...


# Symbols of NetHack's default symbol set that MiniHack levels use. '|' and '-' also draw open
# doors (an open door in a vertical wall is '-', in a horizontal wall '|'), which the legend says.
LEGEND: dict[str, str] = {
    "@": "you",
    ".": "floor or doorless doorway",
    "#": "corridor (or tree/sink)",
    "|": "wall, or an open door in a horizontal wall",
    "-": "wall, or an open door in a vertical wall",
    "+": "closed door (or a spellbook)",
    "(": "tool or weapon item (e.g. a key)",
    ")": "weapon",
    "[": "armour",
    "%": "food",
    "?": "scroll",
    "!": "potion",
    "/": "wand",
    "=": "ring",
    '"': "amulet",
    "*": "gem or rock",
    "$": "gold",
    ">": "staircase down",
    "<": "staircase up",
    "{": "fountain",
    "}": "water or lava",
    "^": "trap",
    "`": "boulder or rock",
    " ": "not seen (dark or unexplored)",
}

# Short glosses for NLE action names (nle.nethack.actions enum member names).
ACTION_GLOSS: dict[str, str] = {
    "N": "move north (up)",
    "E": "move east (right)",
    "S": "move south (down)",
    "W": "move west (left)",
    "NE": "move north-east",
    "SE": "move south-east",
    "SW": "move south-west",
    "NW": "move north-west",
    "PICKUP": "pick up what lies at your position",
    "APPLY": "apply (use) a tool, e.g. a key on an adjacent locked door",
    "OPEN": "open a door",
    "KICK": "kick",
    "SEARCH": "search around you",
    "DOWN": "go down a staircase",
    "UP": "go up a staircase",
    "ESC": "cancel",
}

_BLANK = 32


def _text(arr: Any) -> str:
    """NUL-padded bytes (uint8 array) -> str."""
    raw = bytes(np.asarray(arr, dtype=np.uint8).tobytes()).split(b"\0", 1)[0]
    return raw.decode("ascii", errors="replace").strip()


@functools.cache
def _object_name(glyph: int) -> str:
    """Item name of an NLE object glyph (e.g. 2102 -> 'skeleton key'); '' for a non-object glyph."""
    import nle.nethack as nh

    if not nh.glyph_is_object(int(glyph)):
        return ""
    return str(nh.objdescr.from_idx(nh.glyph_to_obj(int(glyph))).oc_name)


def inventory_names(obs: Mapping[str, Any]) -> list[str]:
    """Names of the items the agent carries: from `inv_strs` when present, else from `inv_glyphs`."""
    if "inv_strs" in obs:
        return [s for s in (_text(row) for row in np.asarray(obs["inv_strs"])) if s]
    if "inv_glyphs" in obs:
        return [n for n in (_object_name(int(g)) for g in np.asarray(obs["inv_glyphs"]).reshape(-1)) if n]
    return []


def is_blank(obs: Mapping[str, Any]) -> bool:
    """True for the all-blank screen NLE returns once the game has ended (success or death)."""
    if "blstats" in obs and np.any(np.asarray(obs["blstats"]) != 0):
        return False
    for key in ("chars", "chars_crop"):
        if key in obs:
            chars = np.asarray(obs[key])
            return bool(np.all((chars == _BLANK) | (chars == 0)))
    return False


class MiniHackTextView:
    """Text rendering of MiniHack/NLE observations (dicts of arrays for ONE observation).

    Args:
        config: what to show and the character budget.
        action_names: NLE action names in the env's action order (e.g. ['N', 'E', ..., 'APPLY']);
            see `minihack_action_names`. Without them actions render as "action <index>".
    """

    def __init__(self, config: ViewConfig | None = None, action_names: Sequence[str] = ()) -> None:
        self.config = config or ViewConfig()
        self.action_names = list(action_names)

    # -- pieces ---------------------------------------------------------------------------------
    def _map_rows(self, obs: Mapping[str, Any], radius: int) -> tuple[list[str], str]:
        """The map as rows of text and its title."""
        if "chars" in obs:
            chars = np.asarray(obs["chars"], dtype=np.uint8)
            if self.config.map == "full":
                seen = np.argwhere(chars != _BLANK)
                if seen.size == 0:
                    return [], "Map: nothing seen"
                (r0, c0), (r1, c1) = seen.min(0), seen.max(0)
                rows = [bytes(chars[r, c0 : c1 + 1]).decode("ascii", "replace") for r in range(r0, r1 + 1)]
                return rows, "Map (everything seen so far, @ = you):"
            x, y = self._agent_xy(obs, chars)
            pad = np.full((chars.shape[0] + 2 * radius, chars.shape[1] + 2 * radius), _BLANK, np.uint8)
            pad[radius : radius + chars.shape[0], radius : radius + chars.shape[1]] = chars
            win = pad[y : y + 2 * radius + 1, x : x + 2 * radius + 1]
            size = 2 * radius + 1
            return [bytes(r).decode("ascii", "replace") for r in win], f"Map ({size}x{size} around you, @ = you):"
        if "chars_crop" in obs:
            crop = np.asarray(obs["chars_crop"], dtype=np.uint8)
            half = crop.shape[0] // 2
            r = min(radius, half)
            win = crop[half - r : half + r + 1, half - r : half + r + 1]
            size = 2 * r + 1
            return [bytes(row).decode("ascii", "replace") for row in win], f"Map ({size}x{size} around you, @ = you):"
        raise TextViewError("a MiniHack text view needs observation key 'chars' or 'chars_crop'")

    @staticmethod
    def _agent_xy(obs: Mapping[str, Any], chars: np.ndarray) -> tuple[int, int]:
        if "blstats" in obs:
            x, y = (int(v) for v in np.asarray(obs["blstats"])[:2])
            if 0 <= y < chars.shape[0] and 0 <= x < chars.shape[1]:
                return x, y
        at = np.argwhere(chars == ord("@"))
        if at.size:
            return int(at[0][1]), int(at[0][0])
        return chars.shape[1] // 2, chars.shape[0] // 2

    @staticmethod
    def _legend(rows: Sequence[str]) -> str:
        present = {ch for row in rows for ch in row}
        items = [f"{ch if ch != ' ' else 'blank'} {meaning}" for ch, meaning in LEGEND.items() if ch in present]
        return "Legend: " + "; ".join(items) if items else ""

    @staticmethod
    def _stats(obs: Mapping[str, Any]) -> str:
        if "blstats" not in obs:
            return ""
        b = np.asarray(obs["blstats"]).astype(np.int64)
        # NLE blstats indices: 0 x, 1 y, 10 hp, 11 max hp, 12 depth, 20 turn.
        return f"Stats: HP {b[10]}/{b[11]}, turn {b[20]}, depth {b[12]}, position x={b[0]} y={b[1]}"

    def _sections(self, obs: Mapping[str, Any], radius: int, drop: int) -> list[str]:
        """Sections in display order; `drop` removes optional ones (legend, stats, inventory, message)."""
        cfg = self.config
        if is_blank(obs):
            return ["The game has ended: the screen is blank (NLE clears it when an episode is over)."]
        rows, title = self._map_rows(obs, radius)
        parts = [title, *rows]
        optional = [
            ("legend", cfg.legend and self._legend(rows)),
            ("stats", cfg.stats and self._stats(obs)),
            ("inventory", cfg.inventory and "Inventory: " + (", ".join(inventory_names(obs)) or "nothing")),
            ("message", "Message: " + _text(obs["message"]) if cfg.message and "message" in obs else ""),
        ]
        # Drop order: legend, stats, inventory, message (the message matters most to a judge).
        dropped = {name for name, _ in optional[:drop]}
        keep = {name: text for name, text in optional if name not in dropped and text}
        for name in ("legend", "message", "inventory", "stats"):
            if name in keep:
                parts.append(str(keep[name]))
        return parts

    # -- public ---------------------------------------------------------------------------------
    def render(self, obs: Mapping[str, Any]) -> str:
        """One observation as text, at most `config.budget` characters."""
        if not isinstance(obs, Mapping):
            raise TextViewError(f"a MiniHack text view renders one dict observation, got {type(obs).__name__}")
        budget = self.config.budget
        radius = self.config.radius
        drop = 0
        while True:
            text = "\n".join(self._sections(obs, radius, drop))
            if len(text) <= budget:
                return text
            if self.config.map == "crop" and radius > 1:
                radius -= 1
            elif drop < 4:
                drop += 1
            else:
                return text[: budget - 3] + "..."

    def action_name(self, action: Any) -> str:
        index = int(np.asarray(action).reshape(-1)[0])
        if 0 <= index < len(self.action_names):
            name = self.action_names[index]
            gloss = ACTION_GLOSS.get(name)
            return f"{name} ({gloss})" if gloss else name
        return f"action {index}"

    def render_transition(self, obs: Mapping[str, Any], action: Any, next_obs: Mapping[str, Any]) -> str:
        return (
            f"Before the action:\n{self.render(obs)}\n\nAction: {self.action_name(action)}\n\n"
            f"After the action:\n{self.render(next_obs)}"
        )


class TaskTextView:
    """Generic text rendering through a task's named views: one line per view, ``name = value unit``.

    For tasks without a hand-written renderer (any suite). Values are rounded to 3 decimals; long
    arrays are cut to fit the budget.
    """

    def __init__(self, task: TaskSpec, getters: Mapping[str, Any], config: ViewConfig | None = None) -> None:
        self.task, self.getters = task, dict(getters)
        self.config = config or ViewConfig()
        self.n_actions: int | None = None

    def render(self, obs: Any) -> str:
        lines = []
        for name, get in self.getters.items():
            spec = self.task.views[name]
            value = np.asarray(get(obs))
            shown = np.array2string(np.round(value.astype(np.float64), 3), separator=", ", threshold=64)
            if value.dtype == np.uint8 and value.ndim >= 1:
                shown = repr(_text(value)) if value.ndim == 1 else f"<{value.shape} array>"
            lines.append(f"{name} = {shown} {spec.unit}".rstrip() + f"  ({spec.meaning})")
        text = "\n".join(lines) or "(the task defines no views)"
        budget = self.config.budget
        return text if len(text) <= budget else text[: budget - 3] + "..."

    def action_name(self, action: Any) -> str:
        arr = np.asarray(action)
        if arr.ndim == 0 or arr.size == 1:
            return f"action {int(arr.reshape(-1)[0]) if np.issubdtype(arr.dtype, np.integer) else float(arr)}"
        return "action " + np.array2string(np.round(arr.astype(np.float64), 3), separator=", ")

    def render_transition(self, obs: Any, action: Any, next_obs: Any) -> str:
        return (
            f"Before the action:\n{self.render(obs)}\n\nAction: {self.action_name(action)}\n\n"
            f"After the action:\n{self.render(next_obs)}"
        )


@functools.cache
def minihack_action_names(env_id: str, kwargs_items: tuple[tuple[str, Any], ...] = ()) -> tuple[str, ...]:
    """NLE action names (e.g. 'N', 'PICKUP', 'APPLY') of a MiniHack env id, in action-index order.

    Builds the env once (about 0.3 s) and caches the answer per (env id, kwargs).
    """
    import gymnasium as gym
    import minihack  # noqa: F401 - registers the MiniHack ids

    kwargs = {k: v for k, v in kwargs_items if k != "observation_keys"}
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    try:
        return tuple(a.name for a in env.unwrapped.actions)
    finally:
        env.close()


def task_action_names(task: TaskSpec) -> tuple[str, ...]:
    """NLE action names of a MiniHack task (its env id and env_kwargs), in action-index order."""
    items = tuple(sorted((k, v) for k, v in task.env_kwargs.items() if _hashable(v)))
    return minihack_action_names(task.env_id, items)


def text_view_for(task: TaskSpec, config: ViewConfig | None = None) -> TextView:
    """The text view of a task: `MiniHackTextView` for MiniHack tasks, `TaskTextView` otherwise."""
    if task.suite == "minihack":
        return MiniHackTextView(config, task_action_names(task))
    from embodied.envs.make import make
    from embodied.envs.wrappers import view_getters

    env = make(task)
    try:
        getters = view_getters(task, env.observation_space)
    finally:
        env.close()
    return TaskTextView(task, getters, config)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def config_from_options(options: Mapping[str, str], base: ViewConfig | None = None) -> ViewConfig:
    """A `ViewConfig` from string options (``map``, ``radius``, ``budget``, ``legend``, ...), e.g. from a spec."""
    cfg = base or ViewConfig()
    updates: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("radius", "budget"):
            try:
                updates[key] = int(value)
            except ValueError:
                raise TextViewError(f"text view option {key} must be an integer, got {value!r}") from None
        elif key == "map":
            updates[key] = value
        elif key in ("legend", "message", "inventory", "stats"):
            if value not in ("0", "1", "true", "false"):
                raise TextViewError(f"text view option {key} must be 0/1/true/false, got {value!r}")
            updates[key] = value in ("1", "true")
        else:
            raise TextViewError(f"unknown text view option {key!r}; known: map, radius, budget, legend, message, ...")
    return replace(cfg, **updates)
