"""The seed README's four steps, written exactly as documented, and its toy example."""

import torch
import torch.optim as optim


from vhe import VHE, DataLoader

from .toy_models import Px, Qc, Qz


def test_readme_steps_1_to_4_train():
    torch.manual_seed(0)
    # toy data: classes of 2-D points shifted by a per-class offset
    n_classes, per_class = 20, 10
    offsets = 3 * torch.randn(n_classes, 1, 2)
    data = (offsets + 0.3 * torch.randn(n_classes, per_class, 2)).reshape(-1, 2)
    class_labels = torch.arange(n_classes).repeat_interleave(per_class)
    batch_size = 32

    # Step 2.
    model = VHE(encoder=[Qc(), Qz()], decoder=Px())  # Use default prior c,z ~ N(0, 1)
    vhe = model
    # Step 3.
    data_loader = DataLoader(
        data=data,
        labels={
            "c": class_labels,  # The class label for each element in data
            "z": range(len(data)),
        },  # A unique label for each element in data
        k_shot={"c": 5, "z": 1},  # Number of elements given to each encoder
        batch_size=batch_size,
    )
    # Step 4.
    optimiser = optim.Adam(vhe.parameters(), lr=3e-2)
    first = None
    for epoch in range(150):
        for batch in data_loader:
            optimiser.zero_grad()
            log_prob = model.score(inputs=batch.inputs, sizes=batch.sizes, x=batch.target)
            (-log_prob).backward()  # Negative to get loss
            optimiser.step()
        if first is None:
            first = log_prob.item()
    assert log_prob.item() > first + 1.0

    # the posterior predictive given a support set lands near that class
    support = data[class_labels == 3][:5].unsqueeze(0).expand(200, 5, 2)
    samples = model.sample(inputs={"c": support})
    assert samples.shape == (200, 2)
    centre = data[class_labels == 3].mean(0)
    spread_to_class = (samples.mean(0) - centre).norm()
    typical_gap = (offsets[:, 0] - centre).norm(dim=1).mean()
    assert spread_to_class < 0.25 * typical_gap
