from django.urls import path

from classifier import api

urlpatterns = [
    path("images/", api.ImageCollectionApi.as_view(), name="image-list"),
    path("images/<int:upload_id>/", api.ImageDetailApi.as_view(), name="image-detail"),
    path("images/<int:upload_id>/hide/", api.ImageHideApi.as_view(), name="image-hide"),
    path("images/<int:upload_id>/label/", api.ImageLabelApi.as_view(), name="image-label"),
    path("images/<int:upload_id>/predict/", api.ImagePredictApi.as_view(), name="image-predict"),
    path("models/", api.ModelVersionListApi.as_view(), name="model-list"),
]
