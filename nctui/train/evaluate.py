"""One evaluation: every METRICS.md number for the model as it is now.

Runs two streamed forward passes over a class-balanced probe of the training set (class sums
first, then the spreads; one pass read twice when the probe fits in a chunk), one pass over the
test set, one over the training set (or monitor.margin_samples of it) for err_gamma and the
training error of the bounds (skipped when the probe is that whole set), one backward pass over a
sample of the probe for the SGD noise, and the spectra of every weight matrix. Features and
training logits never sit in memory all at once.

Under torchrun (nctui/train/distributed.py) every rank streams its own contiguous shard of the
probe, the test set and the margin samples (no sample twice, none padded) and the float64 class
sums, within-class sums and counts are all-reduced, so the class statistics are the
single-process ones up to the order of the sums; the probe's logits are gathered whole. Rank 0
alone then takes the spectra, the gradient noise and the bounds (the weights are replicated)
and every rank returns rank 0's groups.
"""

from __future__ import annotations

import math

import torch

from nctui import metrics
from nctui.config import Config
from nctui.data import balanced_indices, seeded_generator
from nctui.models.networks import Classifier, LayerInfo, square_loss
from nctui.train.checkpoint import Slot
from nctui.train.distributed import World

FEATURE_BYTES_PER_CHUNK = 512 * 1024 * 1024  # bound on one chunk's features and their float64 scratch
NOISE_PROBE_MAX = 4096  # samples behind the "full" gradient of grad_noise


def balanced_probe(labels: torch.Tensor, num_classes: int, per_class: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced probe of `per_class` samples a class (all when 0 or more than there are)."""
    if per_class <= 0 or per_class * num_classes >= labels.numel():
        return torch.arange(labels.numel())
    return balanced_indices(labels, num_classes, per_class * num_classes, seeded_generator(seed, "probe"))


def margin_sample(labels: torch.Tensor, num_classes: int, size: int, seed: int) -> torch.Tensor | None:
    """Indices of the class-balanced `size` training samples behind err_gamma; None for the whole
    set (size 0 or at least the set). ValueError names monitor.margin_samples when it is below C."""
    if size <= 0 or size >= labels.numel():
        return None
    if size < num_classes:
        raise ValueError(f"monitor.margin_samples = {size}: must be 0 (the whole training set) or at least "
                         f"the number of classes ({num_classes})")
    return balanced_indices(labels, num_classes, size, seeded_generator(seed, "margin-samples"))


def input_statistics(train_x: torch.Tensor, normalization: dict | None, chunk: int = 4096) -> metrics.InputStatistics:
    """The training inputs' energies the bounds need, streamed once. `normalization` is the data
    set's preprocessing["normalize"] ({"mean": [...], "std": [...]} per channel, or None), undone
    for the authors' raw-pixel data term."""
    norm = normalization or {}
    energy = metrics.InputEnergy(norm.get("mean"), norm.get("std"))
    for start in range(0, train_x.shape[0], chunk):
        energy.update(train_x[start:start + chunk])
    return energy.result()


class Evaluator:
    """Holds the probe sets and what the noise metrics compare against between evaluations."""

    def __init__(self, cfg: Config, model: Classifier, train_x: torch.Tensor, train_y: torch.Tensor,
                 test_x: torch.Tensor, test_y: torch.Tensor, targets: torch.Tensor, num_classes: int,
                 normalization: dict | None = None, world: World | None = None) -> None:
        """`normalization`: the data set's preprocessing["normalize"] (per-channel mean and std
        applied to the inputs), for the authors' raw-pixel bound; None when inputs are raw.
        `world`: the ranks that share the evaluation under torchrun; None for a single process."""
        self.cfg = cfg
        self.world = world or World.single(train_x.device)
        self.num_classes = num_classes
        probe = balanced_probe(train_y, num_classes, cfg.monitor.probe_per_class, cfg.seed)
        picked = margin_sample(train_y, num_classes, cfg.monitor.margin_samples, cfg.seed)
        # err_gamma's samples: the probe's own logits serve when the probe is that same set
        self.margins_from_probe = picked is None and probe.numel() == train_y.numel()
        self.margin_x = train_x if picked is None else train_x[picked.to(train_x.device)]
        self.margin_y = train_y if picked is None else train_y[picked.to(train_x.device)]
        probe = probe.to(train_x.device)
        self.probe_x, self.probe_y, self.probe_t = train_x[probe], train_y[probe], targets[probe]
        self.test_x, self.test_y = test_x, test_y
        self.test_t = torch.nn.functional.one_hot(test_y, num_classes).float() * cfg.train.target_scale
        # this rank's rows of each (all of them for a single process)
        self.probe_rows = self.world.shard(self.probe_x.shape[0])
        self.test_rows = self.world.shard(test_x.shape[0])
        self.margin_rows = self.world.shard(self.margin_x.shape[0])
        self.inputs = input_statistics(train_x, normalization)
        self.infos: list[LayerInfo] = model.infos
        with torch.no_grad():
            _, inputs = model.forward_with_features(train_x[:2])
        feature_floats = sum(h.shape[1] for h in inputs)
        self.feature_dims = [h.shape[1] for h in inputs]   # x, h_1, ..., h_{L-1}, flattened
        # float32 features of every layer, plus WithinClass's float64 scratch (2 n p) for one layer
        widest = max(h.shape[1] for h in inputs)
        self.chunk = max(32, min(8192, FEATURE_BYTES_PER_CHUNK // (4 * feature_floats + 16 * widest)))
        # The class means of the input itself never change: taken once, not at every evaluation.
        fixed = metrics.ClassMeans(num_classes, inputs[0].shape[1], device=train_x.device)
        for start in range(0, self.probe_x.shape[0], self.chunk):
            fixed.update(self.probe_x[start:start + self.chunk].flatten(1), self.probe_y[start:start + self.chunk])
        self.input_means, self.counts = fixed.means(), fixed.counts
        # The previous evaluation, for drift and output_jitter; a snapshot carries it so a
        # resumed run measures them exactly as an uninterrupted one would.
        self.prev_weights: list[torch.Tensor] | None = None
        self.prev_logits: torch.Tensor | None = None
        self.prev_step = 0
        self.class_means: torch.Tensor | None = None   # C x p penultimate class means, for snapshots

    def slots(self, weights: list[torch.Tensor], num_classes: int) -> list[Slot]:
        """The evaluator's part of a snapshot (see Trainer.slots): the previous evaluation's
        weights and probe logits, and the penultimate class means."""
        device = self.probe_x.device

        def put_prev_weight(k: int):
            def put(t: torch.Tensor | None) -> None:
                if t is None:
                    self.prev_weights = None
                else:
                    if self.prev_weights is None:
                        self.prev_weights = [None] * len(weights)
                    self.prev_weights[k] = t.to(device)
            return put

        def put_logits(t: torch.Tensor | None) -> None:
            self.prev_logits = t.to(device) if t is not None else None
            if t is None:
                self.prev_step = 0

        def put_means(t: torch.Tensor | None) -> None:
            self.class_means = t.to(device) if t is not None else None

        slots = [Slot(f"resume.prev_weights.{k}", tuple(w.shape), w.dtype, False,
                      (lambda k=k: self.prev_weights[k] if self.prev_weights is not None else None), put_prev_weight(k))
                 for k, w in enumerate(weights)]
        slots.append(Slot("resume.prev_logits", (self.probe_x.shape[0], num_classes), weights[-1].dtype, False,
                          lambda: self.prev_logits, put_logits))
        slots.append(Slot("eval.class_means", (num_classes, weights[-1].shape[1]), torch.float64, False,
                          lambda: self.class_means, put_means))
        return slots

    def check_restorable(self, tensors: dict[str, torch.Tensor]) -> None:
        """A snapshot holds the previous evaluation whole or not at all (ValueError otherwise)."""
        present = [f"resume.prev_weights.{k}" in tensors for k in range(len(self.infos))]
        if any(present) != all(present) or ("resume.prev_logits" in tensors) != all(present):
            raise ValueError("resume.prev_logits and resume.prev_weights.* must come together")

    @torch.no_grad()
    def _chunks(self, model: Classifier):
        rows = self.probe_rows
        for start in range(rows.start, rows.stop, self.chunk):
            end = min(start + self.chunk, rows.stop)
            logits, inputs = model.forward_with_features(self.probe_x[start:end])
            yield logits, inputs, self.probe_y[start:end]

    @torch.no_grad()
    def _test_set(self, model: Classifier) -> dict:
        loss_sum, correct, n = 0.0, 0, self.test_x.shape[0]
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.test_x.device)
        correct_acc = torch.zeros((), dtype=torch.int64, device=self.test_x.device)
        rows = self.test_rows
        for start in range(rows.start, rows.stop, self.chunk):
            end = min(start + self.chunk, rows.stop)
            logits = model(self.test_x[start:end])
            loss_acc += ((logits - self.test_t[start:end]) ** 2).sum(dtype=torch.float64)
            correct_acc += (logits.argmax(1) == self.test_y[start:end]).sum()
        self.world.sum_(loss_acc, correct_acc)
        if n:
            loss_sum, correct = float(loss_acc) / (n * self.num_classes), int(correct_acc)
        return {"loss": loss_sum if n else None, "acc": correct / n if n else None}

    @torch.no_grad()
    def _margin_errors(self, model: Classifier, gamma: float, probe_logits: torch.Tensor) -> tuple[int, int, int]:
        """(#{m_i <= gamma}, #{argmax wrong}, samples) over the training set, or its
        monitor.margin_samples subset: integer counts summed over streamed chunks of logits."""
        if self.margins_from_probe:
            return (*(int(c) for c in metrics.margin_error_counts(probe_logits, self.probe_y, gamma)),
                    int(self.probe_y.numel()))
        n = self.margin_x.shape[0]
        counts = torch.zeros(2, dtype=torch.int64, device=self.margin_x.device)
        rows = self.margin_rows
        for start in range(rows.start, rows.stop, self.chunk):
            end = min(start + self.chunk, rows.stop)
            counts += metrics.margin_error_counts(model(self.margin_x[start:end]), self.margin_y[start:end], gamma)
        self.world.sum_(counts)
        within, wrong = counts.tolist()
        return within, wrong, n

    def _gradient_noise(self, model: Classifier, step: int) -> dict:
        """grad_noise / noise_scale from the gradient over a seeded random sample of the probe and
        the gradients of a few training-size minibatches of that sample.

        The minibatches are the sample's first noise_batches batches (each a uniform random
        batch of it, as separate draws would be) and their gradients are part of the full one,
        so the noise costs one backward pass over the sample and no more.
        """
        batches = self.cfg.monitor.noise_batches
        batch = self.cfg.train.batch_size
        n = min(self.probe_x.shape[0], NOISE_PROBE_MAX)
        if batches == 0 or n <= batch:
            return {"grad_noise": None, "noise_scale": None, "noise_batches": None, "noise_samples": None}
        params = [p for p in model.parameters() if p.requires_grad]
        gen = seeded_generator(self.cfg.seed, f"noise:{step}")
        pick = torch.randperm(self.probe_x.shape[0], generator=gen)[:n].to(self.probe_x.device)

        def flat_grad(idx: torch.Tensor) -> torch.Tensor:
            loss = square_loss(model(self.probe_x[idx]), self.probe_t[idx])
            return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

        head = min(batches, n // batch) * batch
        minibatch = [flat_grad(pick[s:s + batch]) for s in range(0, head, batch)]
        rest = [flat_grad(pick[s:s + self.chunk]) * (min(self.chunk, n - s) / n) for s in range(head, n, self.chunk)]
        full = sum(minibatch) * (batch / n) + sum(rest)
        return metrics.gradient_noise(full, minibatch, batch, n)

    def evaluate(self, model: Classifier, step: int, lr: float, rho_history: torch.Tensor | None) -> dict:
        """All eval-record groups (train, test, geometry, layers, noise, margins, bounds).

        Under torchrun every rank takes part in the sums (both probe passes, the test set, the
        margin counts); rank 0 then computes the rest and every rank returns rank 0's groups.
        """
        cfg, C = self.cfg, self.num_classes
        was_training = model.training
        model.eval()
        with torch.no_grad():   # a weight-normalised W_k is computed afresh; only a plain one needs a copy
            weights = [w.clone() if isinstance(w, torch.nn.Parameter) else w for w in model.effective_weights()]
        n_layers = len(weights)
        # A probe that fits in one chunk is run through the network once and read by both passes.
        rows = self.probe_rows
        chunks = list(self._chunks(model)) if rows.stop - rows.start <= self.chunk else None

        # Pass 1: class means of every hidden layer's input (h_1, ..., h_{L-1}; x's are fixed).
        means_acc = [metrics.ClassMeans(C, p, device=self.probe_x.device) for p in self.feature_dims[1:]]
        for logits, inputs, y in chunks or self._chunks(model):
            for acc, h in zip(means_acc, inputs[1:]):
                acc.update(h, y)
        for acc in means_acc:
            self.world.sum_(*acc.partial_sums())
        means = [self.input_means, *(acc.means() for acc in means_acc)]
        counts = self.counts

        # Pass 2: within-class spreads of the hidden layers, NC4, margins, probe loss.
        within = [metrics.WithinClass(mu, counts) for mu in means[1:]]
        all_logits = []
        for logits, inputs, y in chunks or self._chunks(model):
            for acc, h in zip(within[:-1], inputs[1:-1]):
                acc.update(h, y)
            within[-1].update(inputs[-1], y, logits)
            all_logits.append(logits)
        for acc in within:
            self.world.sum_(*acc.partial_sums())
        mine = torch.cat(all_logits) if all_logits else self.probe_t.new_zeros((0, C))
        logits = self.world.gather_rows(mine, rows, self.probe_x.shape[0])
        test = self._test_set(model)
        b = cfg.monitor.bounds
        within_gamma, wrong, samples = self._margin_errors(model, b.gamma, logits)
        if not self.world.is_main:   # the weights are rank 0's too: it alone takes the rest
            self._remember(weights, logits, step, means[-1])
            model.train(was_training)
            return self.world.share(None)
        probe_loss = float(square_loss(logits, self.probe_t))
        probe_acc = float((logits.argmax(1) == self.probe_y).float().mean())

        geometry = metrics.collapse_metrics(means[-1], counts, within[-1], weights[-1])
        layers = []
        rho_jitter = metrics.rho_jitter(rho_history) if rho_history is not None else [None] * n_layers
        for k, (info, w) in enumerate(zip(self.infos, weights)):
            svd = metrics.singular(w)  # decomposed once, read by the spectrum and the alignment
            spec = metrics.spectrum(svd, C, cfg.monitor.rank_tol)
            collapse = metrics.layer_collapse(means[k + 1], counts, within[k]) if k < n_layers - 1 else {}
            drift = None
            if self.prev_weights is not None and step > self.prev_step:
                drift = metrics.relative_drift(w, self.prev_weights[k], step - self.prev_step)
            layers.append({
                "name": info.name,
                "rho": spec["fro_norm"],
                "sv": spec["sv"],
                "rank": spec["rank"],
                "stable_rank": spec["stable_rank"],
                "effective_rank": spec["effective_rank"],
                "top_c_energy": spec["top_c_energy"],
                "rank_ceiling": metrics.rank_ceiling(cfg.train.batch_size, info.positions, lr,
                                                     cfg.train.weight_decay, cfg.monitor.rank_tol),
                "nc1": collapse.get("nc1"),
                "nc1_trace_ratio": collapse.get("nc1_trace_ratio"),
                "alignment": metrics.alignment(svd, means[k], C) if info.kind == "dense" else None,
                "drift": drift,
                "rho_jitter": rho_jitter[k],
            })

        noise = self._gradient_noise(model, step)
        noise["output_jitter"] = (metrics.output_jitter(logits, self.prev_logits)
                                  if self.prev_logits is not None else None)

        # A layer without a finite norm (None) makes rho non-finite, hence every bound None.
        rho_k = [layer["rho"] if layer["rho"] is not None else math.inf for layer in layers]
        rho = math.prod(rho_k)
        rho_tilde = metrics.rho_tilde(rho_k, [i.positions if i.kind == "conv" else 1 for i in self.infos])
        summary = metrics.margin_summary(metrics.margins(logits, self.probe_y), rho)
        bounds = metrics.norm_bounds(
            convention=b.convention, rho=rho, rho_tilde=rho_tilde, num_layers=n_layers,
            kernel_areas=[i.kernel_area for i in self.infos if i.kind == "conv"], num_classes=C,
            inputs=self.inputs, m=b.m, gamma=b.gamma, delta=b.delta,
            err_gamma=within_gamma / samples if samples else None, err_gamma_samples=samples,
            test_error=1.0 - test["acc"] if test["acc"] is not None else None,
            train_error=wrong / samples if samples else None)

        self._remember(weights, logits, step, means[-1])
        model.train(was_training)
        return self.world.share({
            "train": {"loss": probe_loss, "acc": probe_acc, "samples": int(self.probe_x.shape[0])},
            "test": test,
            "geometry": geometry,
            "layers": layers,
            "noise": noise,
            "margins": summary,
            "bounds": bounds,
        })

    def _remember(self, weights: list[torch.Tensor], logits: torch.Tensor, step: int,
                  class_means: torch.Tensor) -> None:
        """What the next evaluation compares against (drift, output_jitter) and a snapshot carries."""
        self.prev_weights, self.prev_logits, self.prev_step = weights, logits, step
        self.class_means = class_means
