// Produces framed records from stdin with the Java client: the codec, topic and partition from
// the arguments; per record a big-endian int key length (-1: no key), the key, an int value
// length, the value. Prints "partition offset" per record, in the order sent.
// Run as a single-file program: java -cp 'KAFKA_LIB/*' CodecProducer.java BOOTSTRAP TOPIC
// PARTITION CODEC
import java.io.DataInputStream;
import java.io.EOFException;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class CodecProducer {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put("bootstrap.servers", args[0]);
        config.put("compression.type", args[3]);
        config.put("linger.ms", "1000");
        config.put("batch.size", String.valueOf(8 << 20));
        config.put("max.request.size", String.valueOf(16 << 20));
        config.put("key.serializer", ByteArraySerializer.class.getName());
        config.put("value.serializer", ByteArraySerializer.class.getName());
        DataInputStream in = new DataInputStream(System.in);
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            while (true) {
                int keyLength;
                try {
                    keyLength = in.readInt();
                } catch (EOFException end) {
                    break;
                }
                byte[] key = keyLength < 0 ? null : in.readNBytes(keyLength);
                byte[] value = in.readNBytes(in.readInt());
                ProducerRecord<byte[], byte[]> record =
                        new ProducerRecord<>(args[1], Integer.parseInt(args[2]), key, value);
                record.headers().add("modality", "face".getBytes()).add("label", "s1".getBytes());
                sent.add(producer.send(record));
            }
            producer.flush();
            for (Future<RecordMetadata> future : sent) {
                RecordMetadata metadata = future.get();
                System.out.println(metadata.partition() + " " + metadata.offset());
            }
        }
    }
}
