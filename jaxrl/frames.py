"""Pictures of environment states: RGB uint8 arrays (H, W, 3), one drawing per environment family.

    draw, fps = renderer_for("CartPole-v1")           # refuses an environment without a drawing
    pictures = draw(env, params, states, obs)         # states / obs: leading axis N (NumPy) -> N pictures

Classic control (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum) is drawn here with NumPy from
the state's physical quantities (gymnax's own drawings need gymnasium's pygame renderer, which is not a
dependency); MinAtar from its observation, one colour per channel; the maze and the grid world by their own
`render_level`; Brax by its own MuJoCo renderer (`brax.io.image`), which needs an OpenGL context (EGL or OSMesa
without a display), or as Brax's HTML viewer (`brax_html`), which needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxrl.envs.errors import InvalidChoiceError

Colour = tuple[int, int, int]
# (env, env params, states, raw observations), states and observations with a leading axis N -> N pictures.
FramesFn = Callable[[Any, Any, Any, np.ndarray], list[np.ndarray]]


class Canvas:
    """A white (height, width) RGB picture over a patch of the plane: x to the right from x_range[0] to
    x_range[1], y upwards from y_bottom, the same scale on both axes. Every shape is a mask over all pixel centres
    at once, so a picture of a few shapes costs a few vectorised NumPy operations."""

    def __init__(self, height: int, width: int, x_range: tuple[float, float], y_bottom: float, background: Colour = (255, 255, 255)):
        self.image = np.empty((height, width, 3), np.uint8)
        self.image[:] = background
        scale = width / (x_range[1] - x_range[0])  # pixels per unit
        self.x = x_range[0] + (np.arange(width) + 0.5)[None, :] / scale  # (1, W) world x of each pixel column
        self.y = y_bottom + (height - np.arange(height) - 0.5)[:, None] / scale  # (H, 1) world y of each pixel row

    def fill(self, mask: np.ndarray, colour: Colour) -> None:
        self.image[np.broadcast_to(mask, self.image.shape[:2])] = colour

    def polygon(self, points: Any, colour: Colour) -> None:
        """A convex polygon, corners (n, 2) in order (either way round)."""
        points = np.asarray(points, float)
        sides = []
        for (ax, ay), (bx, by) in zip(points, np.roll(points, -1, axis=0)):
            sides.append((bx - ax) * (self.y - ay) - (by - ay) * (self.x - ax))  # > 0: left of the edge a -> b
        sides = np.stack(np.broadcast_arrays(*sides))
        self.fill((sides >= 0).all(0) | (sides <= 0).all(0), colour)

    def rectangle(self, centre: Any, width: float, height: float, angle: float, colour: Colour) -> None:
        """A width x height rectangle around `centre`, turned by `angle` radians (counter-clockwise)."""
        c, s = np.cos(angle), np.sin(angle)
        corners = np.array([[-width, -height], [width, -height], [width, height], [-width, height]]) / 2
        self.polygon(np.asarray(centre, float) + corners @ np.array([[c, s], [-s, c]]), colour)

    def segment(self, a: Any, b: Any, width: float, colour: Colour) -> None:
        """A line from a to b, `width` thick, with round ends."""
        (ax, ay), (bx, by) = a, b
        dx, dy = bx - ax, by - ay
        t = np.clip(((self.x - ax) * dx + (self.y - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        self.fill((self.x - ax - t * dx) ** 2 + (self.y - ay - t * dy) ** 2 <= (width / 2) ** 2, colour)

    def disc(self, centre: Any, radius: float, colour: Colour) -> None:
        self.fill((self.x - centre[0]) ** 2 + (self.y - centre[1]) ** 2 <= radius**2, colour)


BLACK, GREY, RED, BLUE, BROWN = (0, 0, 0), (150, 150, 150), (200, 60, 50), (60, 110, 220), (200, 140, 80)


def cartpole(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """The cart on its track (red marks: the x limits of the episode), the pole at its angle. (240, 360, 3)."""
    limit = float(params.x_threshold)
    canvas = Canvas(240, 360, (-1.25 * limit, 1.25 * limit), -1.0)
    canvas.segment((-1.25 * limit, 0.0), (1.25 * limit, 0.0), 0.02, BLACK)
    for side in (-limit, limit):
        canvas.segment((side, -0.2), (side, 0.2), 0.03, RED)
    x, theta, pole = float(state.x), float(state.theta), 2 * float(params.length)  # params.length: half the pole
    canvas.rectangle((x, 0.0), 0.5, 0.3, 0.0, BLACK)
    canvas.segment((x, 0.1), (x + pole * np.sin(theta), 0.1 + pole * np.cos(theta)), 0.1, BROWN)
    canvas.disc((x, 0.1), 0.05, BLUE)
    return canvas.image


def acrobot(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """Two links hanging from a fixed joint (angles from straight down); the episode ends when the tip rises
    above the line one link above the joint. (300, 300, 3)."""
    l1, l2 = float(params.link_length_1), float(params.link_length_2)
    reach = 1.15 * (l1 + l2)
    canvas = Canvas(300, 300, (-reach, reach), -reach)
    canvas.segment((-reach, l1), (reach, l1), 0.02, BLACK)
    a1, a2 = float(state.joint_angle1), float(state.joint_angle2)
    elbow = (l1 * np.sin(a1), -l1 * np.cos(a1))
    tip = (elbow[0] + l2 * np.sin(a1 + a2), elbow[1] - l2 * np.cos(a1 + a2))
    canvas.segment((0.0, 0.0), elbow, 0.15, BLUE)
    canvas.segment(elbow, tip, 0.15, BLUE)
    for joint in ((0.0, 0.0), elbow):
        canvas.disc(joint, 0.08, (230, 200, 40))
    return canvas.image


def mountain_car(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """The car on the hills y = 0.45 sin(3x) + 0.55 (gym's curve), tilted along the slope, and the goal's flag.
    Discrete and continuous MountainCar share it. (240, 360, 3)."""
    lo, hi = float(params.min_position), float(params.max_position)
    canvas = Canvas(240, 360, (lo, hi), 0.0)
    height = lambda x: 0.45 * np.sin(3 * x) + 0.55
    canvas.fill(canvas.y <= height(canvas.x), (120, 170, 90))
    goal = float(params.goal_position)
    canvas.segment((goal, height(goal)), (goal, height(goal) + 0.15), 0.012, BLACK)
    canvas.polygon([(goal, height(goal) + 0.15), (goal, height(goal) + 0.11), (goal + 0.07, height(goal) + 0.13)], (230, 200, 40))
    x = float(state.position)
    angle = np.arctan(1.35 * np.cos(3 * x))  # the slope dy/dx of the curve
    normal = np.array([-np.sin(angle), np.cos(angle)])
    canvas.rectangle(np.array([x, height(x)]) + 0.045 * normal, 0.16, 0.07, angle, BLACK)
    return canvas.image


def pendulum(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """The rod at angle theta (0: upright, counter-clockwise positive); the blue bar under it is the last torque,
    full width at the maximum. (240, 240, 3)."""
    length = float(params.l)
    reach = 1.3 * length
    canvas = Canvas(240, 240, (-reach, reach), -reach)
    theta = float(state.theta)
    canvas.segment((0.0, 0.0), (-length * np.sin(theta), length * np.cos(theta)), 0.2 * length, RED)
    canvas.disc((0.0, 0.0), 0.05 * length, BLACK)
    torque = float(np.clip(np.asarray(state.last_u).reshape(-1)[0] / float(params.max_torque), -1.0, 1.0))
    if torque:
        canvas.segment((0.0, -1.15 * length), (torque * length, -1.15 * length), 0.08 * length, BLUE)
    return canvas.image


# MinAtar: one colour per observation channel (at most 10 channels, Seaquest's), black where no channel is set.
MINATAR_COLOURS = np.array([(240, 240, 240), (230, 60, 50), (60, 130, 240), (250, 200, 40), (60, 200, 90),
                            (200, 80, 220), (40, 210, 210), (250, 140, 40), (150, 150, 150), (140, 90, 40)], np.uint8)


def minatar(env: Any, params: Any, state: Any, obs: np.ndarray, tile: int = 24) -> np.ndarray:
    """MinAtar's (10, 10, C) observation, each cell the colour of its highest set channel. (10 tile, 10 tile, 3)."""
    obs = np.asarray(obs) > 0
    channel = np.where(obs.any(-1), obs.shape[-1] - 1 - np.argmax(obs[..., ::-1], axis=-1), -1)  # highest set, or -1
    cells = np.where(channel[..., None] >= 0, MINATAR_COLOURS[channel % len(MINATAR_COLOURS)], np.uint8(0))
    return np.repeat(np.repeat(cells.astype(np.uint8), tile, axis=0), tile, axis=1)


def maze(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """The maze's own picture with the agent's 5x5 view lightened. (240, 240, 3)."""
    from jaxrl.envs.maze import render_level

    return render_level(params.level, state, tile=16, show_view=True)


def gridworld(env: Any, params: Any, state: Any, obs: np.ndarray) -> np.ndarray:
    """The grid world's own picture. (240, 240, 3)."""
    from jaxrl.envs.gridworld import render_level

    return render_level(params.level, state, tile=16)


def each_state(draw: Callable[[Any, Any, Any, np.ndarray], np.ndarray]) -> FramesFn:
    """A drawing of one state -> a drawing of every state of an episode (leading axis N)."""

    def frames(env: Any, params: Any, states: Any, obs: np.ndarray) -> list[np.ndarray]:
        return [draw(env, params, jax.tree.map(lambda x: x[t], states), obs[t]) for t in range(len(obs))]

    return frames


# ---------------------------------------------------------------------------------------------- Brax

BRAX_SIZE = (240, 320)  # (H, W): brax.io.image's default


def check_brax_images(env: Any) -> None:
    """Refuse (one line) before anything is played when MuJoCo has no OpenGL context to render Brax frames with."""
    import mujoco

    try:
        mujoco.Renderer(env.brax_env.sys.mj_model, 8, 8).close()
    except Exception as err:  # mujoco.FatalError, or PyOpenGL's errors when a platform library is missing
        raise InvalidChoiceError(
            f"Brax images need an OpenGL context (MUJOCO_GL=egl or osmesa), which failed here ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120] if str(err) else ''}); write --out NAME.html for Brax's HTML viewer instead"
        ) from None


def _pipeline_states(states: Any) -> list[Any]:
    """The Brax pipeline states of an episode of `BraxEnv` states (leading axis N), one per step."""
    pipeline = states.brax_state.pipeline_state
    return [jax.tree.map(lambda x: x[t], pipeline) for t in range(len(states.time))]


def brax(env: Any, params: Any, states: Any, obs: np.ndarray) -> list[np.ndarray]:
    """Brax's own MuJoCo rendering of each state, from the model's tracking camera when it has one (it follows the
    body; the default camera stays put and loses a runner). (240, 320, 3) each."""
    from brax.io import image

    check_brax_images(env)
    model = env.brax_env.sys.mj_model
    cameras = [model.camera(i).name for i in range(model.ncam)]
    camera = "track" if "track" in cameras else None
    return [np.asarray(f, np.uint8) for f in image.render_array(env.brax_env.sys, _pipeline_states(states), *BRAX_SIZE, camera)]


def brax_html(env: Any, states: Any) -> str:
    """Brax's HTML viewer of an episode (states: `BraxEnv` states with a leading axis). The page loads Brax's
    viewer script from its CDN when opened."""
    from brax.io import html

    return html.render(env.brax_env.sys, [jax.tree.map(np.asarray, s) for s in _pipeline_states(states)])


# ---------------------------------------------------------------------------------------------- the table

# Environment id, or else family (jaxrl.envs.family_of) -> (frames of an episode, default frames per second).
# GIF delays are in 1/100 s, so the default rates are ones it plays exactly (25: 4/100 s, 10: 10/100 s).
BY_ID: dict[str, tuple[FramesFn, int]] = {
    "CartPole-v1": (each_state(cartpole), 25),
    "Acrobot-v1": (each_state(acrobot), 25),
    "MountainCar-v0": (each_state(mountain_car), 25),
    "MountainCarContinuous-v0": (each_state(mountain_car), 25),
    "Pendulum-v1": (each_state(pendulum), 25),
    "Maze-v0": (each_state(maze), 10),
    "GridWorld-v0": (each_state(gridworld), 10),
}
BY_FAMILY: dict[str, tuple[FramesFn, int]] = {
    "gymnax/minatar": (each_state(minatar), 10),
    "brax": (brax, 25),
}


def renderer_for(env_id: str) -> tuple[FramesFn, int]:
    """(frames function, default fps) of an environment id; an id without a drawing is refused (one line)."""
    from jaxrl.envs import family_of

    family = family_of(env_id)  # refuses an unknown id
    found = BY_ID.get(env_id) or BY_FAMILY.get(family)
    if found is None:
        raise InvalidChoiceError(f"no renderer for {env_id!r} (family {family}); jaxrl render draws "
                                 f"{', '.join(BY_ID)}, and the families {', '.join(BY_FAMILY)}")
    return found
