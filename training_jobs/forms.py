"""Admin forms: register a dataset and launch a training job."""

from __future__ import annotations

from pathlib import Path

from django import forms
from django.conf import settings

from training_jobs import selectors, services
from training_jobs.models import Dataset, TrainingJob


class DatasetRegisterForm(forms.ModelForm):
    """Scan a folder on the server and register it. Errors name the folder and what is wrong."""

    class Meta:
        model = Dataset
        fields = ["name", "path"]
        help_texts = {
            "name": "Leave blank to use the folder name.",
            "path": "Absolute path on the server of a folder with train/ and test/ subfolders, "
            "each holding one folder of images per class.",
        }

    name = forms.CharField(max_length=100, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The AHE dataset is in a shared/ folder beside the repository on the
        # project's machines. Suggest it when it is there.
        ahe = Path(settings.BASE_DIR).parent / "shared" / "datasets" / "ahe"
        if not self.is_bound and ahe.is_dir():
            self.fields["path"].initial = str(ahe.resolve())

    def validate_unique(self) -> None:
        # Registering a known path again rescans it, which dataset_register handles.
        pass

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if not Path(cleaned["path"]).expanduser().is_absolute():
            raise forms.ValidationError(
                {
                    "path": "Give an absolute path, starting with /: a relative one would depend on the folder "
                    "the server was started in."
                }
            )
        try:
            self.registered = services.dataset_register(path=cleaned["path"], name=cleaned.get("name") or "")
        except services.InvalidDataset as error:
            raise forms.ValidationError({"path": str(error)}) from error
        return cleaned


class TrainingJobLaunchForm(forms.ModelForm):
    """The admin's "New training job" form. Defaults reproduce the default model."""

    backbone = forms.ChoiceField(
        help_text="EfficientNet-Lite variants ship their ImageNet weights offline. Pick “Other timm model” to train "
        "any timm architecture from a weights file."
    )
    other_backbone = forms.CharField(
        required=False, max_length=100, help_text="timm architecture name, used with “Other timm model”."
    )

    OTHER = "__other__"

    class Meta:
        model = TrainingJob
        fields = ["dataset", *selectors.JOB_SETTINGS]
        help_texts = {
            "weights_file": "Path on the server of ImageNet weights (.safetensors or .pth) for a timm backbone.",
            "mode": "A linear probe trains only the new classification layer; a fine-tune trains every layer.",
            "epochs": "Passes over the training images. The epoch with the best validation macro-F1 is kept.",
            "batch_size": "Images per optimisation step; lower it if the worker runs out of memory.",
            "learning_rate": "Peak AdamW learning rate after warm-up.",
            "image_size": "Network input side in pixels.",
            "seed": "Random seed of the augmentations, the batch order and the new layer's initial weights, and of "
            "the validation split unless a split seed is given.",
            "split_seed": "Seed of the validation split. Jobs with the same split seed are validated on the same "
            "images, so their validation scores compare. The default model used 1. Empty: the seed.",
            "ema_decay": "Validate and keep a moving average of the weights with this decay per batch, for "
            "example 0.998. Empty: off.",
            "patience": "Stop after this many epochs without a better validation macro-F1. Empty: train all epochs.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = selectors.job_defaults()
        choices = [(name, name) for name in selectors.backbone_choices()]
        self.fields["backbone"].choices = [*choices, (self.OTHER, "Other timm model (needs a weights file)")]
        for name, value in defaults.items():
            if name in self.fields and not self.is_bound:
                self.fields[name].initial = value
        datasets = selectors.dataset_list()
        self.fields["dataset"].queryset = datasets
        if not self.is_bound and len(datasets[:2]) == 1:
            self.fields["dataset"].initial = datasets[0].pk
        self.fields["weights_file"].required = False
        # The browser's number inputs show the ranges that training_job_settings_errors applies.
        # The model fields' own ">= 0" checks would give a second, different message for a
        # negative number, so training_job_settings_errors alone judges the range.
        for name, (low, high) in services.WHOLE_NUMBER_RANGES.items():
            self.fields[name].validators = []
            self.fields[name].widget.attrs.update(min=low, max=high)
        self.fields["ema_decay"].widget.attrs.update(min=0, max=1, step="any")

    def clean(self):
        cleaned = super().clean()
        unnamed_backbone = False
        chose_other = cleaned.get("backbone") == self.OTHER
        if chose_other:
            other = (cleaned.get("other_backbone") or "").strip()
            if other:
                cleaned["backbone"] = other
            else:
                unnamed_backbone = True
                self.add_error("other_backbone", "Name the timm architecture to train.")

        # Fields that failed to parse already carry their own error and are
        # missing from `cleaned`, so the rules below check only the others,
        # and every invalid field is reported in one submit.
        values = {name: cleaned[name] for name in selectors.JOB_SETTINGS if name in cleaned}
        if unnamed_backbone:
            values.pop("backbone", None)
        if "weights_file" in values:
            values["weights_file"] = values["weights_file"] or ""
        errors = services.training_job_settings_errors(dataset=cleaned.get("dataset"), values=values)
        for field, message in errors.items():
            if field == "backbone" and chose_other:
                field = "other_backbone"
            self.add_error(field if field in self.fields else None, message)
        return cleaned

    def launch(self, user) -> TrainingJob:
        values = {name: self.cleaned_data.get(name) for name in selectors.JOB_SETTINGS}
        return services.training_job_create(dataset=self.cleaned_data["dataset"], created_by=user, **values)
