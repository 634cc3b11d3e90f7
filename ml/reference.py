"""Published per-class test F1 on the AHE dataset, in dataset folder order.

Free of torch, so the web process can show these rows without loading a model.
"""

from ml.data import AHE_CLASSES

# The fully trained ResNet of Llamas et al., "Classification of Architectural
# Heritage Images Using Deep Learning Techniques", Applied Sciences
# 7(10):992, 2017.
PAPER_F1 = dict(zip(AHE_CLASSES, (0.906, 0.874, 0.903, 0.953, 0.967, 0.937, 0.805, 0.923, 0.990, 0.925)))

# The best public fine-tune found on the same test set: ImageNet HRNet-W64.
HRNET_W64_F1 = dict(zip(AHE_CLASSES, (0.937, 0.909, 0.944, 0.946, 0.949, 0.936, 0.940, 0.979, 0.966, 0.936)))
