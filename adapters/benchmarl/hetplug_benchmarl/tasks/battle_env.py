"""MAgent2 ``battle`` as a TorchRL environment: one learning team against a fixed opponent.

Red is the learning team (one agent group, ``"red"``); blue is played by a fixed policy
inside the environment (``"greedy"``: attack the weakest red in range, else step towards
the nearest red; or ``"random"``). The grid world itself says where everyone is: each
step writes, besides red's observations, rewards and dones,

* ``("red", "position")`` ``[N, 2]`` and ``("blue", "position")`` ``[K, 2]``: grid cells
  ``(x, y)`` from ``GridWorld.get_pos(handle)``, 0 for dead agents;
* ``("red", "alive")`` ``[N, 1]`` and ``("blue", "alive")`` ``[K, 1]``: bool, from the grid
  world's agent ids after its dead are cleared;
* ``("blue", "action")`` ``[K]``: the action blue takes at this step (its policy only
  reads the current state, so it is drawn when the state is observed);
* ``"battle_won"`` ``[1]``: True at the last step of an episode red won (more red than
  blue alive when the episode ends, MAgent's rule; a wiped-out blue team is a win).

Only ``("red", "observation")`` is the policy's input (the BenchMARL task's observation
spec); the other entries are for hetplug (``positions``/``opponents``) and for logging.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

#: magent2's battle: 13 moves (speed 2, row-major over (dy, dx); index 6 stays) and 8 attacks
MOVES = np.array(  # (dx, dy)
    [(0, -2)]
    + [(-1, -1), (0, -1), (1, -1)]
    + [(-2, 0), (-1, 0), (0, 0), (1, 0), (2, 0)]
    + [(-1, 1), (0, 1), (1, 1)]
    + [(0, 2)]
)
STAY = 6
OPPONENTS = ("greedy", "random")
#: observation channels without minimap/extra features: walls, own presence, own hp, other presence, other hp
OTHER_PRESENCE, OTHER_HP = 3, 4


def _battle_v4():
    if importlib.util.find_spec("magent2") is None:
        raise ImportError(
            "the magent/battle task needs magent2: pip install -c constraints.txt -e '.[magent]' "
            "(or pip install magent2==0.3.4)"
        )
    from magent2.environments import battle_v4

    return battle_v4


class GreedyOpponent:
    """A scripted team: attack the enemy in range with the least HP, else move to the cell
    closest to the nearest enemy. Deterministic given the state.

    Args:
        attack_base: index of the first attack action.
        view2attack: ``[V, V]`` attack index of each view cell (-1: out of range), from
            ``GridWorld.get_view2attack``.
    """

    def __init__(self, attack_base: int, view2attack: np.ndarray) -> None:
        self.cells = np.argwhere(view2attack >= 0)  # (row, col) = (dy, dx) + view centre
        self.codes = attack_base + view2attack[self.cells[:, 0], self.cells[:, 1]]

    def __call__(self, obs: np.ndarray, pos: np.ndarray, enemies: np.ndarray, rng) -> np.ndarray:
        """``obs [K, V, V, C]``, ``pos [K, 2]``, ``enemies [M, 2]`` (alive) -> actions ``[K]``."""
        if len(enemies) == 0:
            return np.full(len(pos), STAY, dtype=np.int64)
        rows, cols = self.cells[:, 0], self.cells[:, 1]
        present = obs[:, rows, cols, OTHER_PRESENCE] > 0
        weakest = np.where(present, obs[:, rows, cols, OTHER_HP], np.inf).argmin(1)
        nearest = enemies[((pos[:, None, :] - enemies[None]) ** 2).sum(-1).argmin(1)]
        landing = pos[:, None, :] + MOVES[None]
        move = ((landing - nearest[:, None, :]) ** 2).sum(-1).argmin(1)
        return np.where(present.any(1), self.codes[weakest], move).astype(np.int64)


class RandomOpponent:
    """Uniformly random actions."""

    def __init__(self, n_actions: int) -> None:
        self.n_actions = n_actions

    def __call__(self, obs: np.ndarray, pos: np.ndarray, enemies: np.ndarray, rng) -> np.ndarray:
        return rng.integers(self.n_actions, size=len(pos)).astype(np.int64)


class BattleEnv(EnvBase):
    """MAgent2 ``battle_v4`` with red learning and blue played by a fixed policy.

    Args:
        map_size: side of the square map (30: 30 v 30 agents; magent2's minimum is 12).
        max_cycles: steps until the episode is truncated.
        opponent: blue's policy, ``"greedy"`` or ``"random"``.
        win_reward: added to the reward of every red agent that acted in the last step of
            an episode red won (0: magent2's rewards only).
        step_reward, dead_penalty, attack_penalty, attack_opponent_reward: magent2's
            reward options (its defaults); a kill always gives 5 (fixed in magent2).
        minimap_mode, extra_features: magent2's observation options.
        seed: seeds the grid world and blue's random draws.
        device: where the output tensors live.
    """

    batch_locked = False

    def __init__(
        self,
        map_size: int = 30,
        max_cycles: int = 200,
        opponent: str = "greedy",
        win_reward: float = 0.0,
        step_reward: float = -0.005,
        dead_penalty: float = -0.1,
        attack_penalty: float = -0.1,
        attack_opponent_reward: float = 0.2,
        minimap_mode: bool = False,
        extra_features: bool = False,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {OPPONENTS}, got opponent={opponent!r}")
        super().__init__(device=device, batch_size=torch.Size([]))
        self.pz = _battle_v4().parallel_env(
            map_size=map_size,
            max_cycles=max_cycles,
            minimap_mode=minimap_mode,
            extra_features=extra_features,
            step_reward=step_reward,
            dead_penalty=dead_penalty,
            attack_penalty=attack_penalty,
            attack_opponent_reward=attack_opponent_reward,
        )
        self.grid = self.pz.env  # magent2.GridWorld (FACTS.md: env.unwrapped.env)
        self.red_handle, self.blue_handle = self.grid.get_handles()
        self.red = [a for a in self.pz.possible_agents if a.startswith("red_")]
        self.blue = [a for a in self.pz.possible_agents if a.startswith("blue_")]
        self.group_map = {"red": list(self.red)}
        self.max_cycles = max_cycles
        self.win_reward = float(win_reward)
        n_actions = int(self.pz.action_space(self.red[0]).n)
        if opponent == "greedy":
            if minimap_mode or extra_features:
                raise ValueError(
                    "the greedy opponent reads the plain 5-channel view: minimap_mode/extra_features off"
                )
            self.opponent = GreedyOpponent(*self.grid.get_view2attack(self.blue_handle))
        else:
            self.opponent = RandomOpponent(n_actions)
        self.rng = np.random.default_rng(seed)
        self._make_specs(n_actions)
        if seed is not None:
            self.set_seed(seed)

    # ------------------------------------------------------------------ specs
    def _make_specs(self, n_actions: int) -> None:
        n, k = len(self.red), len(self.blue)
        space = self.pz.observation_space(self.red[0])
        obs = (
            Bounded(0.0, 2.0, (n, *space.shape), dtype=torch.float32, device=self.device)
            if float(space.low.min()) == 0.0 and float(space.high.max()) == 2.0
            else Unbounded((n, *space.shape), dtype=torch.float32, device=self.device)
        )

        def team(size: int, **more) -> Composite:
            return Composite(
                position=Unbounded((size, 2), dtype=torch.float32, device=self.device),
                alive=Categorical(2, (size, 1), dtype=torch.bool, device=self.device),
                **more,
                shape=(size,),
                device=self.device,
            )

        observation = Composite(
            red=team(n, observation=obs),
            blue=team(k, action=Categorical(n_actions, (k,), dtype=torch.int64, device=self.device)),
            battle_won=Categorical(2, (1,), dtype=torch.bool, device=self.device),
            device=self.device,
        )
        self.observation_spec = observation
        self.action_spec = Composite(
            red=Composite(
                action=Categorical(n_actions, (n,), dtype=torch.int64, device=self.device),
                shape=(n,),
                device=self.device,
            ),
            device=self.device,
        )
        self.reward_spec = Composite(
            red=Composite(reward=Unbounded((n, 1), device=self.device), shape=(n,), device=self.device),
            device=self.device,
        )

        def flags(*shape) -> dict:
            return {
                name: Categorical(2, shape, dtype=torch.bool, device=self.device)
                for name in ("done", "terminated", "truncated")
            }

        self.done_spec = Composite(
            **flags(1), red=Composite(**flags(n, 1), shape=(n,), device=self.device), device=self.device
        )

    # ------------------------------------------------------------------ the grid world
    def _team(self, handle, offset: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[size, 2]`` and alive ``[size]`` of a team, from the grid world."""
        ids = np.asarray(self.grid.get_agent_id(handle), dtype=np.int64) - offset
        pos = np.zeros((size, 2), dtype=np.float32)
        alive = np.zeros(size, dtype=bool)
        if len(ids):
            pos[ids] = self.grid.get_pos(handle)
            alive[ids] = True
        return pos, alive

    def _observe(self, obs: dict, terminal: bool, won: bool) -> TensorDict:
        red_pos, red_alive = self._team(self.red_handle, 0, len(self.red))
        blue_pos, blue_alive = self._team(self.blue_handle, len(self.red), len(self.blue))
        shape = self.observation_spec["red", "observation"].shape[1:]
        red_obs = np.zeros((len(self.red), *shape), dtype=np.float32)
        blue_obs = np.zeros((len(self.blue), *shape), dtype=np.float32)
        for i, name in enumerate(self.red):
            if name in obs:
                red_obs[i] = obs[name]
        for i, name in enumerate(self.blue):
            if name in obs:
                blue_obs[i] = obs[name]
        # blue's action for this step, drawn from the state it observes now
        self._blue_action = np.full(len(self.blue), STAY, dtype=np.int64)
        if not terminal and blue_alive.any():
            self._blue_action[blue_alive] = self.opponent(
                blue_obs[blue_alive], blue_pos[blue_alive], red_pos[red_alive], self.rng
            )
        self._red_alive, self._blue_alive = red_alive, blue_alive
        out = TensorDict(
            {
                "red": TensorDict(
                    {
                        "observation": torch.from_numpy(red_obs),
                        "position": torch.from_numpy(red_pos),
                        "alive": torch.from_numpy(red_alive).unsqueeze(-1),
                    },
                    batch_size=(len(self.red),),
                    device=self.device,
                ),
                "blue": TensorDict(
                    {
                        "position": torch.from_numpy(blue_pos),
                        "alive": torch.from_numpy(blue_alive).unsqueeze(-1),
                        "action": torch.from_numpy(self._blue_action.copy()),
                    },
                    batch_size=(len(self.blue),),
                    device=self.device,
                ),
                "battle_won": torch.tensor([won]),
            },
            batch_size=(),
            device=self.device,
        )
        return out

    # ------------------------------------------------------------------ EnvBase
    def _set_seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.pz.reset(seed=seed)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        obs, _ = self.pz.reset()
        out = self._observe(obs, terminal=False, won=False)
        n = len(self.red)
        false = torch.zeros(1, dtype=torch.bool)
        out.update({"done": false, "terminated": false, "truncated": false})
        for name in ("done", "terminated", "truncated"):
            out["red", name] = torch.zeros(n, 1, dtype=torch.bool)
        return out

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        acted = self._red_alive
        red_action = tensordict.get(("red", "action")).cpu().numpy()
        playing = set(self.pz.agents)
        actions = {name: int(red_action[i]) for i, name in enumerate(self.red) if name in playing}
        actions.update(
            {name: int(self._blue_action[i]) for i, name in enumerate(self.blue) if name in playing}
        )
        obs, rewards, terminations, truncations, _ = self.pz.step(actions)
        red_left = len(self.grid.get_agent_id(self.red_handle))
        blue_left = len(self.grid.get_agent_id(self.blue_handle))
        truncated = self.pz.frames >= self.max_cycles
        eliminated = red_left == 0 or blue_left == 0
        over = truncated or eliminated or not self.pz.agents
        won = over and red_left > blue_left
        out = self._observe(obs, terminal=over, won=won)

        n = len(self.red)
        reward = np.zeros((n, 1), dtype=np.float32)
        term = np.ones((n, 1), dtype=bool)  # dead agents stay terminated
        trunc = np.zeros((n, 1), dtype=bool)
        for i, name in enumerate(self.red):
            if name in rewards:
                reward[i] = rewards[name]
                term[i] = terminations[name]
                trunc[i] = truncations[name]
        ended_by_time = truncated and not eliminated
        if won:
            reward[acted] += self.win_reward
        if over:  # every red agent's episode ends with the battle
            running = ~(term | trunc)
            if ended_by_time:
                trunc |= running
            else:
                term |= running
        out["red"].update(
            {
                "reward": torch.from_numpy(reward),
                "terminated": torch.from_numpy(term),
                "truncated": torch.from_numpy(trunc),
                "done": torch.from_numpy(term | trunc),
            }
        )
        out.update(
            {
                "done": torch.tensor([over]),
                "terminated": torch.tensor([over and not ended_by_time]),
                "truncated": torch.tensor([ended_by_time]),
            }
        )
        return out
