"""Stochastic Gumbel annealing (Yang, Bamler & Mandt 2020): gradient steps on continuous latents whose cost is
taken at a random soft mix of the integers either side of each, the mix hardening as the temperature falls."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ADAM_BETAS", "LEARNING_RATE", "SCORE_EVERY", "annealed_step", "is_scored", "temperature_at"]

ADAM_BETAS = (0.9, 0.999)
LEARNING_RATE = 0.05  # Adam, on the latents (in units of the integer grid)
SCORE_EVERY = 10  # steps between exact scores of the rounded latents
TEMPERATURE_START, TEMPERATURE_END = 0.5, 0.02  # soft mixes at first, near-rounding at the end


def temperature_at(step: int, steps: int) -> float:
    """The temperature at `step` (1..steps) of a search: geometric from TEMPERATURE_START to TEMPERATURE_END."""
    return TEMPERATURE_START * (TEMPERATURE_END / TEMPERATURE_START) ** (step / steps)


def is_scored(step: int, steps: int) -> bool:
    """Whether the rounded latents are scored exactly after `step`: every SCORE_EVERY steps, and the last."""
    return step % SCORE_EVERY == 0 or step == steps


def annealed_step(tf, latents, moments, cost: Callable, temperature, seed, learning_rate: float):
    """One Adam step on `latents` (float tensor) for `cost(soft mix)` (a scalar); returns (latents, moments).

    `moments` is (first, second, step count), zeros at the start. Adam is written out on plain tensors: a Keras
    optimizer needs variables of one fixed shape, and a photo's latents have their own (the step would be traced
    again for each image)."""
    with tf.GradientTape() as tape:
        tape.watch(latents)
        lower = tf.floor(latents)
        # Each side's log-odds fall with its distance (atanh), then Gumbel noise picks a soft mix.
        near = tf.clip_by_value(latents - lower, 1e-5, 1.0 - 1e-5)
        logits = tf.stack([-tf.atanh(near), -tf.atanh(1.0 - near)], axis=-1) / temperature
        noise = tf.random.stateless_uniform(tf.shape(logits), seed, 1e-9, 1.0)
        weights = tf.nn.softmax(logits - tf.math.log(-tf.math.log(noise)), axis=-1)
        loss = cost(lower + weights[..., 1])
    gradient = tape.gradient(loss, latents)
    first, second, count = moments
    count += 1.0
    first = ADAM_BETAS[0] * first + (1.0 - ADAM_BETAS[0]) * gradient
    second = ADAM_BETAS[1] * second + (1.0 - ADAM_BETAS[1]) * tf.square(gradient)
    unbiased = first / (1.0 - ADAM_BETAS[0] ** count), second / (1.0 - ADAM_BETAS[1] ** count)
    latents -= learning_rate * unbiased[0] / (tf.sqrt(unbiased[1]) + 1e-8)
    return latents, (first, second, count)
