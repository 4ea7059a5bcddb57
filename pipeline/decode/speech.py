"""WAV bytes -> the speaker encoder's input: K mel windows of 1.6 s, shape (K, 40, 160).

The features are the ones the GE2E voice encoder shipped in Resemblyzer 0.1.4 was trained on
(its `audio.py` and `hparams.py`): 16 kHz, 25 ms Hann window every 10 ms, 40 slaney mel bands
of the power spectrum, not logged, with the voice scaled to a fixed level. The filterbank is built
here in numpy (it matches librosa's within float32 rounding), so serving needs no librosa.

Silence is cut by an energy rule: 10 ms frames within `VOICED_RANGE_DB` of the loudest frame
(and above an absolute floor) are voice, and the clip is cut to its first and last voiced
frame, widened by `MARGIN_MS` (pauses inside are kept: joining the voice across them scored
worse). The voice is then covered by `N_PARTIALS` windows of 160 frames spread evenly from its
first to its last frame (overlapping for clips under K × 1.6 s); a clip shorter than one
window is repeated to fill it (zero padding scored worse: the LSTM's final state forgets).
Every clip thus becomes the same fixed-size array, whatever its rate (8-48 kHz) or length,
and the encoder averages the K windows' embeddings.
"""

import numpy as np

from pipeline.decode.audio import _read_wav, _resample
from pipeline.decode.errors import DecodeError

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s, the length the encoder was trained on
# Windows a clip is covered by (chosen in docs/experiments/2026-12-05-unseen-speakers.md).
N_PARTIALS = 6
SPEECH_SHAPE = (N_PARTIALS, N_MELS, PARTIAL_FRAMES)
# Voice considered at most: windows stay under 1.5 s apart, so none of it goes unheard.
MAX_VOICED_SECONDS = 16.0
# The voice's level, raised or lowered to it, so that gain cannot move embeddings (the level
# is chosen in docs/experiments/2026-12-05-unseen-speakers.md).
TARGET_DBFS = -20.0
# Frames more than this far below the loudest 10 ms frame are silence (room tone, breaths).
VOICED_RANGE_DB = 40.0
# Frames below this level are silence whatever the clip's peak (digital or near silence).
SILENCE_FLOOR_DBFS = -60.0
# The voice keeps this much on either side, so word onsets and tails survive.
MARGIN_MS = 100
# Less voice than this is no speech (a click or a cough would otherwise become a speaker).
MIN_VOICED_SECONDS = 0.1

_ENERGY_FRAME = SAMPLE_RATE // 100  # 10 ms frames for the silence rule


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 filters: librosa.filters.mel's slaney default
    (fmin 0, fmax rate / 2, area-normalised triangles), which the shipped weights expect."""
    bins = np.linspace(0.0, rate / 2.0, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2.0), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, np.newaxis] - bins[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return weights.astype(np.float32)


_MEL_FILTERS = mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def decode_speech(data: bytes) -> np.ndarray:
    """Decode a WAV clip to float32 features of shape SPEECH_SHAPE, or raise DecodeError."""
    samples, rate = _read_wav(data)
    return speech_features(samples.mean(axis=1), rate)


def speech_features(signal: np.ndarray, rate: int) -> np.ndarray:
    """Mono samples at `rate` -> SPEECH_SHAPE features (the part of decode_speech after the
    WAV container, for callers that already hold samples)."""
    mono = np.asarray(signal, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = _resample(mono, rate, SAMPLE_RATE)
    voice = trim_silence(mono)
    mel = mel_power(normalise_volume(voice))
    starts = partial_starts(mel.shape[1])
    return np.stack([_window(mel, int(start)) for start in starts])


def voiced_frames(signal: np.ndarray) -> np.ndarray:
    """Per 10 ms frame: louder than the floor and within VOICED_RANGE_DB of the loudest."""
    n_frames = len(signal) // _ENERGY_FRAME
    if n_frames == 0:
        return np.zeros(0, dtype=bool)
    frames = signal[: n_frames * _ENERGY_FRAME].reshape(n_frames, _ENERGY_FRAME)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    level = 10.0 * np.log10(np.maximum(power, 1e-20))
    return (level >= level.max() - VOICED_RANGE_DB) & (level >= SILENCE_FLOOR_DBFS)


def trim_silence(signal: np.ndarray) -> np.ndarray:
    """A 16 kHz clip from MARGIN_MS before its first voiced frame to MARGIN_MS after its last,
    at most MAX_VOICED_SECONDS of it; DecodeError when under MIN_VOICED_SECONDS is voiced."""
    voiced = voiced_frames(signal)
    if voiced.sum() * _ENERGY_FRAME < MIN_VOICED_SECONDS * SAMPLE_RATE:
        raise DecodeError("no speech found: the clip is silent or too quiet")
    on = np.flatnonzero(voiced)
    reach = MARGIN_MS * SAMPLE_RATE // 1000
    start = max(0, int(on[0]) * _ENERGY_FRAME - reach)
    stop = min(len(signal), (int(on[-1]) + 1) * _ENERGY_FRAME + reach)
    return signal[start : min(stop, start + int(MAX_VOICED_SECONDS * SAMPLE_RATE))]


def normalise_volume(signal: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale to `target_dbfs` RMS (full scale = 1.0, as Resemblyzer measures it)."""
    rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))
    gain = 10.0 ** (target_dbfs / 20.0) / max(rms, 1e-10)
    return (signal * gain).astype(np.float32)


def mel_power(signal: np.ndarray) -> np.ndarray:
    """(N_MELS, frames) mel power spectrogram: librosa.feature.melspectrogram(sr=16000,
    n_fft=400, hop_length=160, n_mels=40) with its defaults (centred frames, zero padding)."""
    padded = np.pad(signal.astype(np.float32), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP] * _WINDOW
    spectrum = np.fft.rfft(frames, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return (_MEL_FILTERS @ power.T).astype(np.float32)


def partial_starts(n_frames: int, n_partials: int = N_PARTIALS) -> np.ndarray:
    """First frame of each window: evenly spread so the first starts at frame 0 and the last
    ends at the final frame; all 0 when the clip is shorter than one window."""
    last = max(0, n_frames - PARTIAL_FRAMES)
    return np.round(np.linspace(0, last, n_partials)).astype(np.int64)


def _window(mel: np.ndarray, start: int) -> np.ndarray:
    """PARTIAL_FRAMES frames from `start`; a shorter clip is repeated end to end to fill them
    (the encoder reads the final LSTM state, which trailing zeros would wash out)."""
    piece = mel[:, start : start + PARTIAL_FRAMES]
    if piece.shape[1] < PARTIAL_FRAMES:
        piece = np.tile(piece, (1, -(-PARTIAL_FRAMES // piece.shape[1])))[:, :PARTIAL_FRAMES]
    return piece
