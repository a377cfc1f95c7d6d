"""Network families. The model contract (``conf/model/<option>.yaml`` names one of these classes):

- every class takes ``norm`` (a ``NormSpec``: the factory every layer asks for its norm, ``norm(channels)``
  for conv maps, ``norm(channels, dims=1)`` for feature vectors), ``dropout``, ``dropconnect``, and the
  dataset's shape ``in_channels``, ``num_classes``, ``image_size`` (the YAML interpolates them from
  ``data``); anything else it takes (widths, depth, a torchvision name) is its own YAML's value;
- every class has a classmethod ``refuse(norm, dropout, dropconnect) -> str | None``: a one-line reason
  when it cannot honour a chosen option, None when it can. The composition root calls it in preflight,
  so an option is never silently ignored; a class whose ``refuse`` can object also raises that reason as
  a ``UserError`` when built. Values that are the model's own (a depth it has no layout for) are checked
  when it is built, with a ``UserError``;
- the classifier layer is called ``head`` (DropConnect goes on its weights; param-group rules match it);
- layers are made of the shared blocks of ``models/blocks.py`` (layer → norm → ReLU, bias dropped before
  a norm), so that one normalization option means the same in every family.
"""

from recipelab.models.cnn import ConvNet
from recipelab.models.mlp import MLP
from recipelab.models.norm import NormSpec
from recipelab.models.resnet import PreActResNet
from recipelab.models.tv import TorchvisionClassifier
from recipelab.models.wrn import WideResNet

__all__ = ["MLP", "ConvNet", "NormSpec", "PreActResNet", "TorchvisionClassifier", "WideResNet"]
