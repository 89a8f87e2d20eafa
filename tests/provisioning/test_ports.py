from __future__ import annotations

import socket

import pytest
import zmq

from kernelyard.provisioning import PortReservation


def test_reserved_ports_are_refused_to_others_but_not_to_zeromq() -> None:
    with PortReservation.new("127.0.0.1", 3) as reservation:
        assert len(set(reservation.ports)) == 3
        other = socket.socket()
        with pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", reservation.ports[0]))
        other.close()
        context = zmq.Context()
        router = context.socket(zmq.ROUTER)
        try:
            router.bind(f"tcp://127.0.0.1:{reservation.ports[0]}")  # what a kernel does
        finally:
            router.close(linger=0)
            context.term()
    assert not reservation.held


def test_exact_reservation_and_port_zero() -> None:
    with PortReservation.new("127.0.0.1", 1) as first:
        port = first.ports[0]
    with PortReservation.exact("127.0.0.1", [port, 0]) as again:
        assert again.ports[0] == port
        assert again.ports[1] not in (0, port)


def test_exact_reservation_of_a_port_someone_listens_on_fails() -> None:
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(OSError, match="in use"):
            PortReservation.exact("127.0.0.1", [0, listener.getsockname()[1]])
    finally:
        listener.close()


def test_reservations_never_overlap() -> None:
    reservations = [PortReservation.new("127.0.0.1", 5) for _ in range(20)]
    try:
        ports = [p for r in reservations for p in r.ports]
        assert len(ports) == len(set(ports)) == 100
    finally:
        for r in reservations:
            r.release()


def test_an_address_not_on_this_machine_is_refused() -> None:
    with pytest.raises(OSError, match="assign"):
        PortReservation.new("203.0.113.1", 2)
