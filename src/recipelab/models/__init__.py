from recipelab.models.cnn import ConvNet
from recipelab.models.norm import NormSpec

__all__ = ["ConvNet", "NormSpec"]
