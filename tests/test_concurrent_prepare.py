"""Two processes preparing the same corpus into one fresh data dir: the one that loses the race uses
the winner's copy instead of crashing on TFDS's rename."""

from tests.conftest import make_pairs, write_tsv
from xling_zoo.data import corpus, local_files


def test_the_process_that_loses_the_preparation_race_reads_the_winners_copy(tmp_path, monkeypatch):
    path = write_tsv(tmp_path / "pairs.tsv", make_pairs(60, seed=2))
    data_dir = tmp_path / "data"
    real_prepare = local_files.XlingZooLocalFiles.download_and_prepare
    raced = []

    def lose_the_race(self, *args, **kwargs):
        if not raced:  # The other process: prepares the dataset and renames it into place first.
            raced.append(True)
            other = local_files.XlingZooLocalFiles(config=self.builder_config, data_dir=self.data_dir_root)
            real_prepare(other, *args, **kwargs)
            raise FileExistsError(f"Cannot rename {self.data_dir}: destination already exists")
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(local_files.XlingZooLocalFiles, "download_and_prepare", lose_the_race)
    examples = corpus.read_split(f"tsv:{path}", "en-de", "train", data_dir=str(data_dir))
    assert raced and examples
    monkeypatch.undo()
    assert examples == corpus.read_split(f"tsv:{path}", "en-de", "train", data_dir=str(data_dir))
