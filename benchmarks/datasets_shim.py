"""A list-backed torch Dataset, so the Trainer benchmark needs no `datasets` package."""

from torch.utils.data import Dataset


class ListDataset(Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
