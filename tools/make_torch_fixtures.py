"""Make the genuine PyTorch fixtures in tests/convert/fixtures/ (needs torch; run once).

A tiny VGG built with torchvision's recipe (features: conv, relu, ..., pool; avgpool;
classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear) with config
``8,8,M,16,M,16,16,M`` on 16x16 inputs and 1000 outputs, saved by the real torch.save:

- tiny_vgg_zip.pt      torch.save (zip container)
- tiny_vgg_legacy.pt   torch.save(..., _use_new_zipfile_serialization=False)
- tiny_vgg_tar.pt      the torch 0.1-0.3 tar container. torch >= 1.0 cannot write it, so
                       this script writes the container itself, pickling real torch
                       storage/tensor classes with Python's pickle in the layout torch's
                       legacy_load reads; the file is checked by reading it back with
                       torch.load before it is kept.
- inputs.npy           (2, 3, 16, 16) float32 inputs
- logits.npy           what PyTorch computes for them (eval mode)
- features.npy         the output of ``features`` (the conv-only "notop" net)
- tiny_vgg_state.npz   the same weights as plain float32 arrays (for the Keras / Caffe
                       fixture script, which does not need torch)

Some tensors are saved as strided views (a transposed weight, a bias at an offset inside
a bigger storage) so that the readers' stride handling is exercised by real files.

    python tools/make_torch_fixtures.py [OUT_DIR]
"""
import io
import os
import pickle
import struct
import sys
import tarfile
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

CONFIG = [8, 8, "M", 16, "M", 16, 16, "M"]
SIDE, HIDDEN, CLASSES = 16, 16, 1000


class TinyVGG(nn.Module):
    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for item in CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        side = SIDE // 2 ** CONFIG.count("M")
        self.avgpool = nn.AdaptiveAvgPool2d((side, side))
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, HIDDEN), nn.ReLU(True), nn.Dropout(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(True), nn.Dropout(),
            nn.Linear(HIDDEN, CLASSES))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def strided_state(model):
    """The model's state_dict with two tensors replaced by equal-valued strided views."""
    sd = model.state_dict()
    w = sd["classifier.3.weight"]
    sd["classifier.3.weight"] = w.t().contiguous().t()           # strides (1, rows)
    b = sd["features.5.bias"]
    big = torch.randn(b.numel() + 20)
    big[7:7 + b.numel()] = b
    sd["features.5.bias"] = big[7:7 + b.numel()]                  # offset 7 in a storage of 36
    assert not sd["classifier.3.weight"].is_contiguous()
    return sd


def write_tar(sd, path):
    """The torch 0.1-0.3 container: tar members sys_info, storages, tensors, pickle."""
    storages, tensors = OrderedDict(), OrderedDict()
    for i, (name, t) in enumerate(sd.items()):
        skey, tkey = 1000 + i, 2000 + i
        # keep the strided layout: store the underlying storage as it is
        storage = t.untyped_storage()
        n = storage.nbytes() // 4
        data = torch.empty(0).set_(storage, 0, (n,), (1,)).numpy().copy()
        storages[skey] = data
        tensors[tkey] = (skey, tuple(t.shape), tuple(t.stride()), t.storage_offset())

    def blob(chunks):
        return b"".join(chunks)

    st = [pickle.dumps(len(storages), protocol=2)]
    for key, data in storages.items():
        st.append(pickle.dumps((key, "cpu", torch.FloatStorage), protocol=2))
        st.append(struct.pack("<q", data.size) + data.astype("<f4").tobytes())
    st.append(pickle.dumps([], protocol=2))
    te = [pickle.dumps(len(tensors), protocol=2)]
    for key, (skey, size, stride, offset) in tensors.items():
        te.append(pickle.dumps((key, skey, torch.FloatTensor), protocol=2))
        te.append(struct.pack("<i", len(size)) + b"\0" * 4
                  + struct.pack(f"<{len(size)}q", *size) + struct.pack(f"<{len(size)}q", *stride)
                  + struct.pack("<q", offset))

    keys = {id(t): k for k, t in zip(tensors, sd.values())}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return str(keys[id(obj)]) if id(obj) in keys else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(OrderedDict((k, t) for k, t in sd.items()))
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in (("sys_info", sys_info), ("pickle", buf.getvalue()),
                              ("tensors", blob(te)), ("storages", blob(st))):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = TinyVGG().eval()
    with torch.no_grad():   # bigger biases so a wrong bias shows in the logits
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-0.5, 0.5)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, SIDE, SIDE))
                         .astype(np.float32))
    with torch.no_grad():
        logits = model(x).numpy()
        features = model.features(x).numpy()
    sd = strided_state(model)
    torch.save(sd, os.path.join(out, "tiny_vgg_zip.pt"))
    torch.save(sd, os.path.join(out, "tiny_vgg_legacy.pt"), _use_new_zipfile_serialization=False)
    tar_path = os.path.join(out, "tiny_vgg_tar.pt")
    write_tar(sd, tar_path)
    back = torch.load(tar_path, weights_only=False)   # our own file: check torch reads it
    assert list(back) == list(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
        assert back[k].stride() == sd[k].stride(), k
    for name in ("tiny_vgg_zip.pt", "tiny_vgg_legacy.pt"):
        back = torch.load(os.path.join(out, name), weights_only=True)
        assert all(torch.equal(back[k], sd[k]) for k in sd)
    np.save(os.path.join(out, "inputs.npy"), x.numpy())
    np.save(os.path.join(out, "logits.npy"), logits)
    np.save(os.path.join(out, "features.npy"), features)
    np.savez(os.path.join(out, "tiny_vgg_state.npz"),
             **{k: v.contiguous().numpy() for k, v in sd.items()})
    print(f"torch {torch.__version__}: wrote fixtures to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(__file__), "..", "tests", "convert", "fixtures"))
