"""A module next to the pipeline file: steps import it in every mode."""


def squares(count: int) -> list[int]:
    return [i * i for i in range(count)]
