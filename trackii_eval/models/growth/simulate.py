"""Seeded simulation of longitudinal panels for tests, fixtures and benchmarks.

The generating model is the one :func:`growth` fits: a participant-level random intercept and
slope(s) (correlated), an optional dialogue-level random intercept with participants nested in
dialogues, normal residuals, and responses missing completely at random.

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_panel"]


def simulate_panel(
    n_participants: int,
    n_waves: int = 8,
    *,
    missing: float = 0.15,
    beta: tuple[float, float, float, float] = (50.0, 1.5, 0.0, 0.8),
    sd_intercept: float = 8.0,
    sd_slope: float = 1.2,
    corr: float = -0.3,
    sd_quadratic: float = 0.0,
    sigma: float = 5.0,
    n_dialogues: int = 0,
    sd_dialogue: float = 3.0,
    post_wave: int | None = None,
    sd_post: float = 0.0,
    string_ids: bool = False,
    shuffle: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate ``y ~ wave * treated + (wave | participant)``-type panel data.

    Parameters
    ----------
    n_participants, n_waves : int
        Panel size; waves are 0..n_waves-1 (column ``wave``, float copy ``time``).
    missing : float
        Probability that a response is missing (NaN, row kept, as in a raw survey export).
    beta : tuple
        Intercept, wave slope, treated, wave:treated.
    sd_intercept, sd_slope, corr : float
        Participant random intercept and slope standard deviations and correlation.
    sd_quadratic : float
        Standard deviation of an independent random coefficient on ``wave**2`` (0: none).
    sigma : float
        Residual standard deviation.
    n_dialogues : int
        If > 0, participants are nested in this many dialogues with a random intercept.
    sd_dialogue : float
        Dialogue intercept standard deviation.
    post_wave, sd_post : int or None, float
        If ``post_wave`` is set, a column ``post`` = 1 from that wave on, with a participant
        random coefficient of standard deviation ``sd_post``.
    string_ids : bool
        Participant ids as strings (``"P000123"``) instead of integers.
    shuffle : bool
        Return rows in random order.
    seed : int
        Seed for numpy's default generator.

    Returns
    -------
    pandas.DataFrame
        Columns participant, dialogue (if any), wave, time, treated, arm, post (if any), y.

    References
    ----------
    Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
    models using lme4. Journal of Statistical Software 67(1), 1-48.
    """
    rng = np.random.default_rng(seed)
    G, W = n_participants, n_waves
    pid = np.repeat(np.arange(G), W)
    wave = np.tile(np.arange(W, dtype=float), G)
    treated = rng.integers(0, 2, G)
    cov = np.array(
        [
            [sd_intercept**2, corr * sd_intercept * sd_slope],
            [corr * sd_intercept * sd_slope, sd_slope**2],
        ]
    )
    b = rng.multivariate_normal(np.zeros(2), cov, size=G)
    tr = treated[pid]
    mu = beta[0] + beta[1] * wave + beta[2] * tr + beta[3] * wave * tr
    y = mu + b[pid, 0] + b[pid, 1] * wave
    if sd_quadratic > 0:
        y += rng.normal(0.0, sd_quadratic, G)[pid] * wave**2
    cols: dict[str, np.ndarray] = {}
    if post_wave is not None:
        post = (wave >= post_wave).astype(float)
        y += rng.normal(0.0, sd_post, G)[pid] * post if sd_post > 0 else 0.0
        cols["post"] = post
    if n_dialogues > 0:
        dialogue = rng.integers(0, n_dialogues, G)
        y += rng.normal(0.0, sd_dialogue, n_dialogues)[dialogue][pid]
        cols["dialogue"] = np.char.add("D", dialogue.astype(str).astype("U3"))[pid]
    y += rng.normal(0.0, sigma, G * W)
    if missing > 0:
        y[rng.random(G * W) < missing] = np.nan
    ids = np.char.add("P", np.char.zfill(pid.astype(str), 6)) if string_ids else pid
    df = pd.DataFrame(
        {
            "participant": ids,
            "wave": wave,
            "time": wave,
            "treated": tr,
            "arm": np.where(tr == 1, "dialogue", "control"),
            **cols,
            "y": y,
        }
    )
    if shuffle:
        df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df
