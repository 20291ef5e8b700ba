# proto: protobuf-c messages shared by the data and control planes. Generated into build/.
MODULES         += proto
proto_DEPS      :=
proto_SRCS      := proto/pb.c
proto_PROTOS    := $(wildcard proto/*.proto)
proto_GENC      := $(patsubst proto/%.proto,$(GEN)/proto/%.pb-c.c,$(proto_PROTOS))
proto_GENH      := $(proto_GENC:.c=.h)
proto_GENOBJS   := $(proto_GENC:.c=.o)
proto_EXTRA_INC := -I$(GEN)/proto

$(GEN)/proto/%.pb-c.c $(GEN)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(@D)
	protoc-c --proto_path=proto --c_out=$(GEN)/proto $<

# Generated code is not ours to warn about beyond the defaults.
$(GEN)/proto/%.pb-c.o: $(GEN)/proto/%.pb-c.c
	$(CC) -std=c11 -O2 -g $(SANFLAGS) -Wall -I$(GEN)/proto -c $< -o $@
