"""Energies, the contrastive loss and the siamese pair step, on hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.embed.config import ENCODERS
from pipeline.embed.encoders import build_encoder
from pipeline.embed.energy import CosineEnergy, EuclideanEnergy, energy_by_name
from pipeline.embed.loss import ContrastiveLoss
from pipeline.inputs import INPUTS
from pipeline.train.batches import Batch
from pipeline.train.trainer import pair_loss
from schemas.items import Modality


def test_euclidean_energy_rowwise_and_pairwise():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    energy = EuclideanEnergy()
    assert energy(a, b).tolist() == pytest.approx([5.0, 0.0], abs=1e-5)
    expected = [[5.0, math.sqrt(2)], [math.sqrt(13), 0.0]]
    np.testing.assert_allclose(energy.pairwise(a, b).numpy(), expected, atol=1e-5)


def test_cosine_energy_rowwise_and_pairwise():
    a = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    b = torch.tensor([[0.0, 3.0], [-1.0, -1.0]])
    energy = CosineEnergy()
    # Orthogonal -> 1; opposite -> 2, whatever the lengths.
    assert energy(a, b).tolist() == pytest.approx([1.0, 2.0], abs=1e-6)
    expected = [[1.0, 1 + 1 / math.sqrt(2)], [1 - 1 / math.sqrt(2), 2.0]]
    np.testing.assert_allclose(energy.pairwise(a, b).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("energy", [EuclideanEnergy(), CosineEnergy()], ids=repr)
def test_from_squared_l2_matches_direct_energy_on_unit_vectors(energy):
    gen = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(50, 16, generator=gen), dim=1)
    b = F.normalize(torch.randn(50, 16, generator=gen), dim=1)
    d2 = ((a - b) ** 2).sum(dim=1).numpy()
    np.testing.assert_allclose(energy.from_squared_l2(d2), energy(a, b).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        energy.pairwise(a, b).diagonal().numpy(), energy(a, b).numpy(), atol=1e-5
    )


def test_energy_by_name():
    assert isinstance(energy_by_name("euclidean"), EuclideanEnergy)
    assert isinstance(energy_by_name("cosine"), CosineEnergy)
    with pytest.raises(ValueError, match="manhattan"):
        energy_by_name("manhattan")


def test_contrastive_loss_on_hand_computed_pairs():
    x1 = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    x2 = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.3, 0.4], [3.0, 4.0]])
    y = torch.tensor([1, 1, 0, 0])
    loss = ContrastiveLoss(EuclideanEnergy(), margin=1.0)
    # genuine E=5 -> 25; genuine E=0.5 -> 0.25; impostor inside margin E=0.5 -> (1-0.5)^2;
    # impostor beyond the margin E=5 -> 0.
    per_pair = [25.0, 0.25, 0.25, 0.0]
    for i, expected in enumerate(per_pair):
        assert loss(x1[i : i + 1], x2[i : i + 1], y[i : i + 1]).item() == pytest.approx(expected)
    assert loss(x1, x2, y).item() == pytest.approx(sum(per_pair) / 4)


def test_contrastive_loss_uses_the_injected_energy():
    x1 = torch.tensor([[1.0, 0.0]])
    x2 = torch.tensor([[0.0, 2.0]])
    # Cosine E = 1 for orthogonal vectors; Euclidean E = sqrt(5).
    assert ContrastiveLoss(CosineEnergy(), 1.5)(x1, x2, torch.tensor([0])).item() == (
        pytest.approx(0.25)
    )
    assert ContrastiveLoss(EuclideanEnergy(), 1.5)(x1, x2, torch.tensor([1])).item() == (
        pytest.approx(5.0)
    )
    with pytest.raises(ValueError):
        ContrastiveLoss(CosineEnergy(), 0.0)


@pytest.mark.parametrize("modality", list(Modality))
def test_encoders_give_unit_embeddings(modality):
    config = ENCODERS[modality]
    encoder = build_encoder(config).eval()
    x = torch.rand(3, *INPUTS[config.input].shape)
    with torch.no_grad():
        emb = encoder(x)
    assert emb.shape == (3, config.embedding_dim)
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_the_pair_loss_trains_one_encoder_through_both_ends_of_every_pair():
    torch.manual_seed(0)
    encoder = build_encoder(ENCODERS[Modality.FACE]).eval()
    criterion = ContrastiveLoss(EuclideanEnergy(), margin=1.0)
    x = torch.rand(3, *INPUTS[encoder.config.input].shape)
    first, second, same = np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([True, False, False])
    batch = Batch(np.arange(3), first, second, same, np.zeros(3, dtype=bool))

    def grads(loss: torch.Tensor) -> torch.Tensor:
        encoder.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])

    emb = encoder(x)
    expected = criterion(emb[first], emb[second], torch.from_numpy(same))
    both = grads(pair_loss(criterion, encoder(x), batch, mine=False))
    torch.testing.assert_close(pair_loss(criterion, emb, batch, mine=False), expected)
    emb = encoder(x)
    first_only = grads(criterion(emb[first], emb[second].detach(), torch.from_numpy(same)))
    emb = encoder(x)
    second_only = grads(criterion(emb[first].detach(), emb[second], torch.from_numpy(same)))
    assert first_only.abs().sum() > 0 and second_only.abs().sum() > 0
    torch.testing.assert_close(both, first_only + second_only, rtol=1e-4, atol=1e-6)
