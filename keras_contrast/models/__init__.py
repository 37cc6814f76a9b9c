"""keras_contrast.models."""
from keras_contrast.models.resnet import ResNet
from keras_contrast.models.backbones import ApplicationBackbone
from keras_contrast.models.backbones import ApplicationPreprocessing
from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.supcon_model import SupConModel
from keras_contrast.models.moco import MoCoModel
from keras_contrast.models.queue import KeyQueue
from keras_contrast.models.linear_eval import LinearClassifier
from keras_contrast.models.linear_eval import linear_evaluation
from keras_contrast.models.imclr import ImCLRClassifier
from keras_contrast.models.callbacks import KNNAccuracy
from keras_contrast.models.moco_simclr import SimCLRMixCoModel
