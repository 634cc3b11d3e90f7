from django.urls import path

from classifier import views

app_name = "classifier"

urlpatterns = [
    path("", views.upload_page, name="upload"),
    path("uploads/results/", views.upload_results, name="results"),
    path("gallery/", views.gallery, name="gallery"),
    path("gallery/export.csv", views.gallery_export, name="gallery-export"),
    path("images/<int:upload_id>/", views.detail, name="detail"),
    path("images/<int:upload_id>/hide/", views.detail_set_hidden, name="set-hidden"),
    path("images/<int:upload_id>/label/", views.detail_set_label, name="set-label"),
    path("images/<int:upload_id>/delete/", views.detail_delete, name="delete"),
    path("images/<int:upload_id>/predict/", views.detail_predict, name="predict"),
    path("images/<int:upload_id>/display.jpg", views.display_file, name="display-file"),
    path("images/<int:upload_id>/thumbnail.jpg", views.thumbnail_file, name="thumbnail-file"),
    path("images/<int:upload_id>/original", views.original_file, name="original-file"),
]
