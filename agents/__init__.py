"""Ways of playing ProxyAlignment-v0: fixed regimens now; heuristic strategies, SB3 agents and the solver build on them."""

from proxygym.agents.regimen import RegimenAgent, play_episode

__all__ = ["RegimenAgent", "play_episode"]
